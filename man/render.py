#!/usr/bin/env python3
"""Generates the man pages whose content lives elsewhere, so that they cannot drift from it.

  render.py site-yaml docs/config.md OUT          voiceedge-site.yaml(5): the prose and every row of
                                                  the key table in docs/config.md
  render.py ctl voiceedgectl.8.in HELP_FILE OUT   voiceedgectl(8): the COMMANDS section is the one
                                                  `voiceedgectl --help` prints (the command table)
  render.py keys docs/config.md                   the documented keys, one per line (for the tests)

Any input that does not have the expected shape is an error (exit 1) naming the line: a man
page that silently lost half its keys would be worse than none.
"""
import re
import sys

TITLE_DATE = "2026"
SOURCE = "voiceedge"


def fail(msg):
    print(f"render.py: {msg}", file=sys.stderr)
    sys.exit(1)


def escape(text):
    """Plain text -> roff: backslashes, hyphens in words, non-ASCII as groff named/unicode glyphs."""
    out = []
    for ch in text.replace("\\", "\\e"):
        if ch == "-":
            out.append("\\-")
        elif ord(ch) > 127:
            out.append(f"\\[u{ord(ch):04X}]")
        else:
            out.append(ch)
    return "".join(out)


def inline(md):
    """The inline Markdown docs/config.md uses: `code`, **bold**, [text](link)."""
    md = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 (\2)", md)
    parts = re.split(r"(`[^`]*`|\*\*[^*]+\*\*)", md)
    out = []
    for p in parts:
        if p.startswith("`") and p.endswith("`") and len(p) >= 2:
            out.append("\\fB" + escape(p[1:-1]) + "\\fR")
        elif p.startswith("**") and p.endswith("**"):
            out.append("\\fB" + escape(p[2:-2]) + "\\fR")
        else:
            out.append(escape(p))
    return "".join(out)


def line_start_safe(roff):
    """A roff text line must not start with . or ' (it would be a request)."""
    return "\\&" + roff if roff[:1] in (".", "'") else roff


def split_row(line, lineno):
    """Splits a table row on | outside `code` spans (`udp|tcp:ADDR:PORT` is one cell)."""
    if not (line.startswith("|") and line.rstrip().endswith("|")):
        fail(f"line {lineno}: table row must start and end with |")
    cells, cur, in_code = [], "", False
    for ch in line.strip()[1:-1]:
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code:
            cells.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if in_code:
        fail(f"line {lineno}: unbalanced ` in table row")
    cells.append(cur.strip())
    return cells


def parse_config_md(path):
    """-> (paragraphs before the table, key rows, paragraphs after the table)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    before, after, rows = [], [], []
    state = "before"  # before | table | after
    para = []
    header = None

    def flush(target):
        if para:
            target.append(" ".join(para))
            para.clear()

    for n, raw in enumerate(lines, 1):
        line = raw.rstrip()
        if state in ("before", "after") and line.startswith("|"):
            if state == "after":
                fail(f"{path}:{n}: a second table; the man page knows only the key table")
            flush(before)
            state = "table"
            header = [c.lower() for c in split_row(line, n)]
            if header[:4] != ["key", "type", "default", "notes"]:
                fail(f"{path}:{n}: the key table's header must be | key | type | default | notes |")
            continue
        if state == "table":
            if line.startswith("|"):
                cells = split_row(line, n)
                if all(re.fullmatch(r":?-+:?", c) for c in cells):
                    continue  # the |---| separator
                if len(cells) != 4:
                    fail(f"{path}:{n}: expected 4 cells (key, type, default, notes), found {len(cells)}")
                m = re.fullmatch(r"`([^`]+)`", cells[0])
                if not m:
                    fail(f"{path}:{n}: the key cell must be one `code` span, found {cells[0]!r}")
                rows.append({"key": m.group(1), "type": cells[1], "default": cells[2], "notes": cells[3], "line": n})
                continue
            state = "after"
        if line.startswith("#"):
            continue  # headings: the man page has its own
        target = before if state == "before" else after
        if not line.strip():
            flush(target)
        else:
            para.append(line.strip())
    flush(after if state == "after" else before)
    if not rows:
        fail(f"{path}: no key table found")
    seen = {}
    for r in rows:
        if r["key"] in seen:
            fail(f"{path}:{r['line']}: key {r['key']} documented twice (first on line {seen[r['key']]})")
        seen[r["key"]] = r["line"]
    return before, rows, after


def header(name, section, title):
    return [
        f'.\\" Generated by man/render.py; edit the source it names, not this file.',
        f'.TH {name.upper()} {section} "{TITLE_DATE}" "{SOURCE} @VERSION@" "{title}"',
    ]


def site_yaml(config_md, out, version):
    before, rows, after = parse_config_md(config_md)
    r = header("voiceedge-site.yaml", 5, "File Formats")
    r += [".SH NAME", "voiceedge\\-site.yaml \\- the voiceedge site file", ".SH SYNOPSIS", "\\fB/etc/voiceedge/site.yaml\\fR"]
    r += [".SH DESCRIPTION"]
    for i, p in enumerate(before):
        if i:
            r.append(".PP")
        r.append(line_start_safe(inline(p)))
    r += [".SH KEYS",
          "Each entry is a key path (\\fBa.b\\fR is key \\fBb\\fR inside mapping \\fBa\\fR; \\fB[]\\fR marks "
          "a list of mappings; \\fB<port>\\fR stands for a port name), its type or range, its default, and "
          "what it means."]
    for row in rows:
        r.append(".TP")
        r.append(f"\\fB{escape(row['key'])}\\fR")
        default = row["default"]
        kind = inline(row["type"])
        if default.strip().lower() == "required":
            r.append(line_start_safe(f"{kind}; required."))
        else:
            r.append(line_start_safe(f"{kind}; default: {inline(default)}."))
        notes = row["notes"].rstrip(".")
        if notes:
            r.append(line_start_safe(inline(notes[0].upper() + notes[1:]) + "."))
    if after:
        r.append(".SH NOTES")
        for i, p in enumerate(after):
            if i:
                r.append(".PP")
            r.append(line_start_safe(inline(p)))
    r += [".SH FILES",
          ".TP", "\\fB/etc/voiceedge/site.yaml\\fR", "The site file the packaged unit runs (a conffile).",
          ".TP", "\\fB/usr/share/doc/voiceedge/examples/site.yaml\\fR", "A complete, commented example.",
          ".SH SEE ALSO", "\\fBvoiceedged\\fR(8), \\fBvoiceedgectl\\fR(8), \\fBvoiceedge\\-phonesim\\fR(1), "
          "\\fBkea\\-dhcp4\\fR(8)"]
    write(out, r, version)


def ctl(template, help_file, out, version):
    with open(help_file, encoding="utf-8") as f:
        help_text = f.read().split("\n")
    try:
        start = help_text.index("COMMANDS") + 1
    except ValueError:
        fail(f"{help_file}: no COMMANDS section in voiceedgectl --help")
    entries = []
    for line in help_text[start:]:
        if not line.strip():
            break
        m = re.fullmatch(r"  (\S.*?)\s{2,}(\S.*)|  (\S.*?) (\S.*)", line)
        if not m:
            fail(f"{help_file}: cannot read command line {line!r}")
        usage, text = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        entries.append((usage.strip(), text.strip()))
    if not entries:
        fail(f"{help_file}: COMMANDS section is empty")
    roff = []
    for usage, text in entries:
        words = []
        for w in usage.split():
            if w in ("MAC",) or w.startswith("<") or w.startswith("[--"):
                words.append("\\fI" + escape(w) + "\\fR")
            else:
                words.append("\\fB" + escape(w) + "\\fR")
        roff += [".TP", " ".join(words), line_start_safe(escape(text[0].upper() + text[1:])) + "."]
    with open(template, encoding="utf-8") as f:
        lines = f.read().rstrip("\n").split("\n")
    if lines.count("@COMMANDS@") != 1:
        fail(f"{template}: needs exactly one line @COMMANDS@")
    i = lines.index("@COMMANDS@")
    write(out, lines[:i] + roff + lines[i + 1:], version)


def write(out, lines, version):
    text = "\n".join(lines).replace("@VERSION@", version) + "\n"
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv):
    if len(argv) >= 2 and argv[1] == "keys" and len(argv) == 3:
        for row in parse_config_md(argv[2])[1]:
            print(row["key"])
        return
    if len(argv) == 5 and argv[1] == "site-yaml":
        site_yaml(argv[2], argv[3], argv[4])
        return
    if len(argv) == 6 and argv[1] == "ctl":
        ctl(argv[2], argv[3], argv[4], argv[5])
        return
    fail("usage: render.py site-yaml CONFIG_MD OUT VERSION | ctl TEMPLATE HELP_FILE OUT VERSION | keys CONFIG_MD")


if __name__ == "__main__":
    main(sys.argv)
