#!/usr/bin/env python3
"""Debian's nginx in front of several proxies: deploy/nginx/llama-metrics.conf on your ports.

The shipped file names two proxies on 127.0.0.1:11436-11437 and listens on :11435. This
prints it with other addresses (for /etc/nginx/conf.d/), and, for ``scripts/up --proxies N``,
the benchmark and the tests, writes a self-contained nginx configuration around it (pid file,
temporary directories and log in a directory of ours, in the foreground) so that nginx runs as
an ordinary user beside the proxies:

    scripts/nginx_front.py --listen 0.0.0.0:11435 --proxy 10.0.0.2:11435 --proxy 10.0.0.3:11435
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "deploy" / "nginx" / "llama-metrics.conf"
PACKAGE = "nginx-light"  # or nginx; either provides /usr/sbin/nginx

_SERVER = re.compile(r"^([ \t]*)server[ \t]+[^\s{;]+([ \t][^;\n]*)?;[ \t]*$", re.MULTILINE)
_LISTEN = re.compile(r"^([ \t]*)listen[ \t]+[^;\n]+;", re.MULTILINE)
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$")

MAIN = """\
# Written by scripts/nginx_front.py around deploy/nginx/llama-metrics.conf.
daemon off;
worker_processes {workers};
pid {dir}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/llama-metrics.conf;
}}
"""


def check_address(value: str) -> str:
    """``host:port`` (IPv6 in brackets); ValueError otherwise."""
    if not _ADDRESS.match(value) or not 0 < int(value.rsplit(":", 1)[1]) < 65536:
        raise ValueError(f"expected HOST:PORT, not {value!r}")
    return value


def render(listen: str, proxies: Sequence[str], site: str | None = None) -> str:
    """The shipped site configuration listening on ``listen``, balancing over ``proxies``."""
    text = SITE.read_text() if site is None else site
    if not proxies:
        raise ValueError("at least one proxy address is needed")
    servers = list(_SERVER.finditer(text))
    if not servers or not _LISTEN.search(text):
        raise ValueError("the site configuration has no upstream server or listen line")
    indent, options = servers[0].group(1), servers[0].group(2) or ""
    lines = "".join(f"{indent}server {check_address(p)}{options};\n" for p in proxies)
    start, end = servers[0].start(), servers[-1].end()
    text = text[:start] + lines.rstrip("\n") + text[end:]
    return _LISTEN.sub(lambda m: f"{m.group(1)}listen {check_address(listen)};", text, count=1)


def binary() -> str | None:
    """Where nginx is (Debian puts it in /usr/sbin, which an ordinary user's PATH may lack)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def prepare(directory: Path, listen: str, proxies: Sequence[str], workers: int | str = 1,
            nginx: str = "nginx") -> list[str]:
    """Write the configuration into ``directory``; the command that runs nginx on it."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "llama-metrics.conf").write_text(render(listen, proxies))
    main = directory / "nginx.conf"
    main.write_text(MAIN.format(dir=directory.resolve(), workers=workers))
    # -e: nginx would otherwise open its compiled-in /var/log/nginx/error.log before reading
    # the configuration, which an ordinary user cannot.
    return [nginx, "-p", str(directory.resolve()), "-c", str(main.resolve()), "-e", "stderr"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/nginx_front.py",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:11435", help="HOST:PORT clients use")
    parser.add_argument("--proxy", action="append", required=True, metavar="HOST:PORT",
                        help="a proxy's listen address; once per proxy")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(render(args.listen, args.proxy))
    except ValueError as e:
        print(f"nginx_front: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
