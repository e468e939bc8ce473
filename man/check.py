#!/usr/bin/env python3
"""The man pages against what they document (CTest man_pages_check, label unit). Fails on drift:

  * every key row of docs/config.md is an entry of the generated voiceedge-site.yaml(5) (read
    with its own parser, not render.py's), and every key the example site files use is a row;
  * every long option of `voiceedged --help` / `voiceedge-phonesim --help` is in its man page,
    every command of `voiceedgectl --help` in voiceedgectl(8);
  * every page formats without a warning (`man --warnings`, what lintian runs);
  * the shipped /etc/voiceedge/site.yaml (systemd/site.yaml) passes voiceedged --check-config.
"""
import argparse
import os
import re
import subprocess
import sys

import yaml

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def man_text(path):
    """The page as a reader sees it (plain text, no hyphenation or justification tricks)."""
    env = dict(os.environ, MANWIDTH="200", MAN_KEEP_FORMATTING="", LC_ALL="C.UTF-8")
    r = subprocess.run(["man", "-E", "UTF-8", "-l", "-Tutf8", "--nh", "--nj", path], capture_output=True, text=True,
                       env=env, timeout=30)
    check(r.returncode == 0, f"{path}: man failed: {r.stderr}")
    # Undo overstrike bold/underline and unicode hyphens so that options compare as typed.
    text = re.sub(r".\x08", "", r.stdout)
    return text.replace("\u2010", "-").replace("\u2212", "-")


def documented_keys(config_md):
    keys = []
    with open(config_md, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^\| `([^`]+)` \|", line)
            if m:
                keys.append(m.group(1))
    return keys


def key_paths(node, prefix=""):
    """Key paths of a YAML document in the docs' notation: lists as [], mappings' keys with dots."""
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, (dict, list)) and v:
                yield from key_paths(v, path)
            elif isinstance(v, list):
                yield path + "[]"  # an empty list: `ports: []`
            else:
                yield path
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict):
                yield from key_paths(item, prefix + "[]")
            else:
                yield prefix
                break


def documented(path, keys):
    """`poe.sim.eth1.class` is documented by `poe.sim.<port>.class`; a list of scalars by its key."""
    for k in keys:
        pattern = "^" + re.sub(r"<[^>]+>", r"[^.]+", re.escape(k).replace(r"\<", "<").replace(r"\>", ">")) + "$"
        if re.match(pattern, path):
            return True
        # A key documented as a whole mapping/list (e.g. call_manager_group[] as {name, host, ...}).
        if k.endswith("[]") and (path == k or path.startswith(k + ".")):
            return True
        if path.endswith("[]") and (k.startswith(path) or k == path[:-2]):  # an empty list
            return True
    return False


def long_options(help_text):
    return sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", help_text)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--man-dir", required=True)
    ap.add_argument("--voiceedged", required=True)
    ap.add_argument("--voiceedgectl", required=True)
    ap.add_argument("--phonesim", required=True)
    a = ap.parse_args()
    pages = {name: os.path.join(a.man_dir, name) for name in
             ("voiceedged.8", "voiceedgectl.8", "voiceedge-phonesim.1", "voiceedge-site.yaml.5")}
    for name, path in pages.items():
        if not os.path.exists(path):
            failures.append(f"{path} was not generated (build the man_pages target)")
    if failures:
        return report()

    # 1. docs/config.md <-> voiceedge-site.yaml(5) <-> the example files.
    keys = documented_keys(os.path.join(a.source, "docs/config.md"))
    check(len(keys) > 20, f"docs/config.md: only {len(keys)} key rows found")
    site_text = man_text(pages["voiceedge-site.yaml.5"])
    entries = set(re.findall(r"^       (\S+)$", site_text, re.M))
    for k in keys:
        check(k in entries, f"voiceedge-site.yaml(5) has no entry for {k} (a row of docs/config.md)")
    for example in ("examples/site.yaml", "systemd/site.yaml"):
        with open(os.path.join(a.source, example), encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        for path in sorted(set(key_paths(doc))):
            check(documented(path, keys), f"{example}: key {path} is not documented in docs/config.md")

    # 2. Options and commands.
    for prog, page in ((a.voiceedged, "voiceedged.8"), (a.phonesim, "voiceedge-phonesim.1")):
        help_text = run([prog, "--help"]).stdout
        text = man_text(pages[page])
        opts = long_options(help_text.split("\n\n")[0] + "\n" + "\n".join(
            l for l in help_text.split("\n") if l.startswith("  -")))
        check(len(opts) >= 3, f"{prog} --help: no options found")
        for o in opts:
            check(o in text, f"{page} does not document {o} (from {os.path.basename(prog)} --help)")
        check(run([prog, "--version"]).returncode == 0, f"{prog} --version fails")
    ctl_help = run([a.voiceedgectl, "--help"]).stdout
    ctl_text = man_text(pages["voiceedgectl.8"])
    commands = re.findall(r"^  ([a-z][a-z ]*?)(?= MAC| <| \[| {2,})", ctl_help.split("COMMANDS\n", 1)[-1].split("\n\n")[0],
                          re.M)
    check(len(commands) >= 5, f"voiceedgectl --help: only {len(commands)} commands found")
    for c in commands:
        check(re.search(r"^       " + re.escape(c.strip()) + r"(\s|$)", ctl_text, re.M),
              f"voiceedgectl.8 does not document the command '{c.strip()}'")
    for o in long_options("\n".join(l for l in ctl_help.split("\n") if l.startswith("  -"))):
        check(o in ctl_text, f"voiceedgectl.8 does not document {o}")

    # 3. Every page formats cleanly.
    for name, path in pages.items():
        r = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", path], capture_output=True,
                           text=True, env=dict(os.environ, LC_ALL="C.UTF-8"), timeout=30)
        check(r.returncode == 0 and not r.stderr.strip(), f"{name}: man --warnings: {r.stderr.strip()}")

    # 4. The conffile as shipped is valid.
    starter = os.path.join(a.source, "systemd/site.yaml")
    r = run([a.voiceedged, "--config", starter, "--check-config"])
    check(r.returncode == 0, f"systemd/site.yaml fails --check-config: {r.stdout}{r.stderr}")
    return report()


def report():
    for f in failures:
        print("FAIL:", f)
    if not failures:
        print("man pages: all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
