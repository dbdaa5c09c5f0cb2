"""The calibration prompt set: everyday requests written for this project.

Calibration (``localpref calibrate``) chooses a steering strength on these prompts, so they are
the project's own, never taken from the papers' evaluation sets, which stay held out for
checking the choice. They are varied on purpose (advice, explanation, how-to, description,
short stories, opinions, planning) so that every preference has room to move: an answer can be
shorter or longer, plainer or more inventive, gloomier or brighter. ``--quick`` uses the first
few, which already cover advice, explanation, a story and a plan.
"""

from __future__ import annotations

CALIBRATION_PROMPTS: tuple[str, ...] = (
    "How can I get better at waking up early?",
    "Explain why the sky looks blue during the day.",
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Help me plan a relaxed weekend in a small coastal town.",
    "What should I consider before adopting a dog?",
    "Describe the taste of a ripe mango to someone who has never had one.",
    "How do I ask my manager for a day off?",
    "What is the difference between weather and climate?",
    "Give me some ideas for a birthday present for my grandmother.",
    "How do I start learning to play the guitar?",
    "Tell me about the history of the bicycle.",
    "My houseplant's leaves are turning yellow. What could be wrong?",
    "Write a few lines describing a rainy afternoon in a city.",
    "How does a refrigerator keep food cold?",
    "What are some good habits for saving money?",
    "I failed my driving test today. What should I do now?",
    "Suggest a simple dinner I can cook with rice, eggs and spinach.",
    "Why do cats purr?",
    "How should I prepare for my first job interview?",
    "Describe what a busy market looks like on a Saturday morning.",
    "What is a good way to remember people's names?",
    "Explain how vaccines help the body fight disease.",
    "Write a short message to welcome a new neighbour to the street.",
    "What can I do on a long train journey to pass the time?",
)

#: How many prompts ``--quick`` uses.
QUICK_PROMPTS = 4
