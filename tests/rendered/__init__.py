"""Every file the server receives, through the validator the server itself would apply to it.

The first-boot document goes through `cloud-init schema`, the nginx sites through `nginx -t` (and one real
nginx on loopback), the systemd units through `systemd-analyze verify`, every shell script through
`shellcheck` and `bash -n`, the gunicorn settings through `compile()`. The scripts of the remote commands
are taken from what `harness.mockrun.run_program` records — the exact text `pulumi up` would send — and the
files they install are taken back out of those scripts' here-documents, so what is validated is what is sent.

A validator that is missing skips its tests with the reason — except with CI=true, where that fails: a CI
machine without the validators would otherwise pass vacuously. Each validator also has a negative test
showing that the way it is called here does catch a broken file.

Host tools: cloud-init (Debian's, with its `cloudinit` module for /usr/bin/python3), nginx, openssl,
shellcheck, systemd-analyze. Network: the live nginx listens on 127.0.0.1 only, on free ports.

`helpers` holds what the modules share (and what other tests import: `from rendered.helpers import …`).
"""
