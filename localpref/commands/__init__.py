"""Sub-commands of the `localpref` console script, one module each."""
