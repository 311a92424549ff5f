import sys

from local.site import main

sys.exit(main())
