"""The growth benchmark's small phase directly and through PgBouncer in transaction mode.

    python bench/pooled.py [--rounds N]

Starts Debian's PgBouncer on loopback before the project's PostgreSQL (as the tests do,
tests/scale/servers.py), then runs ``bench/growth.py`` with nothing added, alternately with the
direct URL and with the pooler's (``DATABASE_POOLER=transaction``: nothing prepared), each on a
database of its own. Prints one line per run: settlements/s and the p50s of both phases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from django.conf import settings

    from tests.scale import servers

    bouncer = servers.start_pgbouncer(settings.DATA_DIR / "bench-pgbouncer", pool_size=8)
    sides = {
        "direct": {},
        "pooled": {"DATABASE_URL": bouncer.url("postgres"), "DATABASE_POOLER": "transaction"},
    }
    try:
        for number in range(rounds):
            for name, extra in sides.items():
                env = {**os.environ, **extra}
                env.pop("DEBUG", None)
                result = subprocess.run(
                    [sys.executable, "bench/growth.py", "--transfers", "0", "--tasks", "0"]
                    + ["--outcomes", "0", "--database", f"bench_growth_{name}"],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                if result.returncode:
                    raise SystemExit(result.stderr[-2000:])
                figures = json.loads(result.stdout.strip().splitlines()[-1])
                print(
                    json.dumps(
                        {
                            "side": name,
                            "round": number,
                            "pooler": figures["database_pooler"],
                            "small": figures["small"],
                            "large": figures["large"],
                        }
                    ),
                    flush=True,
                )
    finally:
        servers.stop(bouncer.process)


if __name__ == "__main__":
    main()
