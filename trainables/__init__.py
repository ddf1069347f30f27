"""Everything that runs inside one trial: tasks, model, training loop.

This package never imports ``sweep`` (the driver side); the driver hands a trial a plain dict.
"""
