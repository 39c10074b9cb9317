#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    if sys.argv[1:3] in (["services", "status"], ["services", "stop"]):
        # Settings start the embedded servers when no URLs are given; these only look or stop.
        os.environ["EMBEDDED_SERVICES_START"] = "false"
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
