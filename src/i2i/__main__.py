import sys

from i2i.commands import main

sys.exit(main())
