"""A production Django site on AWS: `pulumi up` creates it, `pulumi destroy` removes it.

Settings first (all validated before anything is declared), then the profile's resources, then outputs.
"""

from pathlib import Path

import pulumi

from config.settings import ConfigError, read_stack_config
from profiles import single
from server.host import app_modules, app_python
from server.release import git_release, local_release

# 1. Settings, and the exact release to deploy (a content hash, or the commit the git ref points at).
try:
    settings = read_stack_config()
    if settings.app.source_is_git:
        release = git_release(settings.app.source, settings.app.ref)
    else:
        release = local_release(Path(settings.app.source), settings.app.directory)
except (ConfigError, ValueError, OSError) as error:
    raise pulumi.RunError(str(error)) from None
# Where app.settingsModule or app.wsgiModule is not set: what a local folder's files (and its Procfile) decided, why,
# and the line that pins another (a git source's are decided by its deploy, which logs the same). The same for the
# app's Python.
for reason in (*settings.app.procfile_notes, *app_modules(settings).reasons, app_python(settings).reason):
    if reason:
        pulumi.log.info(f"app: {reason}")

# 2. The site: one server (default), or the scaled-out profile on AWS's managed services.
if settings.profile == "scaled":
    from profiles import scaled

    outputs = scaled.build(settings, release)
else:
    outputs = single.build(settings, release)

# 3. What the operator needs (secrets stay secret: see docs/operations.md, "Outputs").
for key, value in outputs.items():
    pulumi.export(key, value)
