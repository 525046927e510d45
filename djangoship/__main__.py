import sys

from djangoship.cli import main

sys.exit(main())
