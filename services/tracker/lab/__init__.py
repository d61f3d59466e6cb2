"""The tracker's lab: its evaluation set (evalset.py), the VOT-LT / MOT evaluation (evaluation.py),
its speed bench (bench.py) and `coach tracker eval | evalset` (cli.py). The worker and the
tracking core never import this package."""
