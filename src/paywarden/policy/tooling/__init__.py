"""Policy tooling: test suites with coverage, lint, diff and backtest. Pure: no store, no
entry point.

`suite` reads YAML test files, `runner` checks decisions against them and reports which rules
no test exercised, `lint` looks for rules that cannot do what they seem to, `diff` compares
two policies over the partition of the input space their conditions define, `backtest` reads
a ledger's audit log and replays it through a `Replayer` the caller gives (the real engine).
"""
