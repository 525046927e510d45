"""The operator's verbs, run from the project folder: `python3 -m djangoship <verb>` (see `--help`).

It reads the stack's outputs (`pulumi stack output`, or a file the local try-out writes) and acts on the server
over OpenSSH with the stack's key — or, on the scaled profile, on its app servers through AWS Systems Manager with
the operator's AWS CLI. Standard library only, so it runs with any Python 3.11+, inside the project's
virtualenv or not. Layout, Kamal-style: `remote.py` builds what runs on the server (pure functions), `ssh.py` builds
and runs the ssh command line, `stack.py` reads the outputs, `verbs.py`
is what each verb does with them, `cli.py` its arguments; `aws.py`, `fleet.py` and `groupverbs.py` the same for the
scaled profile, `attached.py` a command at the terminal for both.
"""
