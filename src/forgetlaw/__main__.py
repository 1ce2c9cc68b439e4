import sys

from forgetlaw.cli import main

sys.exit(main())
