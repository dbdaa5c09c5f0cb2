"""Calibration: what steering strength this model file can bear (``localpref calibrate``).

``prompts`` is the project's own calibration prompt set, ``sweep`` runs every setting and Pref
on it, ``choice`` turns the rows into the sweep table and picks a setting by the rule, and
``record`` stores the choice per model file and gives it back to ``api.Model`` (the
recommended steering's one substitution point is ``api.Model.submit``).
"""
