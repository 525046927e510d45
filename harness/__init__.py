"""The program run without the Pulumi CLI or AWS: what the tests, the benches and the local try-out stand on.

`mockrun` runs `__main__.py` under Pulumi's mocks and records what it declares; `replay` runs the recorded
remote steps over SSH as pulumi-command would; `localsite` boots a local Debian guest from the recorded
user-data, replays the steps on it, and probes the live site.
"""
