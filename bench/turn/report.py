#!/usr/bin/env python3
# Helper of bench/turn/run.sh: parses turnutils_uclient logs and writes the results table.
"""Two commands (stdlib only):

  report.py parse LOG
      Prints "sent recv lost errors connect" for one turnutils_uclient log: the final
      tot_send_msgs / tot_recv_msgs, the "Total lost packets" count, how many lines
      look like errors (refusals, failures, retransmission give-ups), and uclient's
      "Total connect time" in seconds (allocations, permissions, channels).

  report.py table CSV OUT.md META.md
      Reads the per-run CSV written by run.sh and writes a markdown report to OUT.md
      (META.md, run.sh's description of the set-up, goes first); prints the summary
      table to stdout.
"""

import csv
import re
import sys
from collections import OrderedDict

# Lines of uclient output that are not the normal progress/statistics lines.
ERROR_RE = re.compile(
    r"error|fail|cannot|wrong|refus|timeout|timed out|unknown|not completed|denied|"
    r"exceed|quota|retransmit",
    re.IGNORECASE,
)
NORMAL_RE = re.compile(r"start_mclient|Total |Average |connect time|done, connection")


def parse(path):
    with open(path, errors="replace") as f:
        text = f.read()
    sent = recv = None
    for m in re.finditer(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)", text):
        sent, recv = int(m.group(1)), int(m.group(2))
    lost = None
    m = None
    for m in re.finditer(r"Total lost packets (\d+)", text):
        pass
    if m:
        lost = int(m.group(1))
    connect = re.search(r"Total connect time is (\d+)", text)
    connect = int(connect.group(1)) if connect else None
    errors = [
        line
        for line in text.splitlines()
        if ERROR_RE.search(line) and not NORMAL_RE.search(line)
    ]
    return sent, recv, lost, errors, connect


def cmd_parse(path):
    sent, recv, lost, errors, connect = parse(path)
    na = lambda v: "NA" if v is None else str(v)  # noqa: E731
    print(na(sent), na(recv), na(lost), len(errors), na(connect))


def fmt(x, digits=2):
    return "n/a" if x is None else f"{x:.{digits}f}"


def cmd_table(csv_path, out_path, meta_path):
    rows = list(csv.DictReader(open(csv_path)))
    variants = list(OrderedDict.fromkeys(r["variant"] for r in rows))
    cells = list(
        OrderedDict.fromkeys((int(r["clients"]), int(r["bytes"])) for r in rows)
    )
    cells.sort()

    def agg(sel):
        """Totals over runs: loss % and server CPU s per million relayed packets."""
        ok = [r for r in sel if r["sent"] not in ("", "NA") and r["cpu_s"] not in ("", "NA")]
        sent = sum(int(r["sent"]) for r in ok)
        recv = sum(int(r["recv"]) for r in ok)
        cpu = sum(float(r["cpu_s"]) for r in ok)
        if not ok or sent == 0:
            return None, None, len(ok), len(sel)
        loss = 100.0 * (sent - recv) / sent
        per_m = cpu / (2 * sent) * 1e6
        return loss, per_m, len(ok), len(sel)

    others = [v for v in variants if v != "visavis"]

    head = ["clients", "msg bytes"]
    for v in variants:
        head += [f"{v} loss %", f"{v} CPU s / M pkts"]
    for v in others:
        head += [f"ratio visavis/{v}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in cells + [None]:
        if cell is None:
            sel_cell = lambda r: True  # noqa: E731
            label = ["**all**", "**all**"]
        else:
            clients, size = cell
            sel_cell = lambda r, c=clients, s=size: (  # noqa: E731
                int(r["clients"]) == c and int(r["bytes"]) == s
            )
            label = [str(clients), str(size)]
        vals = {}
        row = list(label)
        for v in variants:
            loss, per_m, ok, n = agg([r for r in rows if r["variant"] == v and sel_cell(r)])
            vals[v] = per_m
            note = "" if ok == n else f" ({n - ok} failed)"
            row += [fmt(loss, 3) + note, fmt(per_m, 2)]
        for v in others:
            a, b = vals.get("visavis"), vals.get(v)
            row += ["n/a" if a is None or not b else f"**{a / b:.2f}**"]
        lines.append("| " + " | ".join(row) + " |")
    table = "\n".join(lines)

    runs = [
        "| rep | variant | clients | msg bytes | rc | msgs sent | msgs recv | lost | "
        "uclient connect s | server CPU s | wall s | error lines |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        runs.append(
            "| "
            + " | ".join(
                [
                    r["rep"], r["variant"], r["clients"], r["bytes"], r["rc"], r["sent"],
                    r["recv"], r["lost"], r["connect_s"], r["cpu_s"], r["wall_s"], r["errors"],
                ]
            )
            + " |"
        )

    meta = open(meta_path).read() if meta_path else ""
    with open(out_path, "w") as out:
        out.write(meta)
        out.write("\n## Summary (totals over all repetitions)\n\n")
        out.write(table + "\n\n")
        out.write(
            "CPU s / M pkts: server CPU seconds (utime+stime of the whole process) per million "
            "relayed packets, where relayed packets = 2 x messages sent by uclient "
            "(tot_send_msgs). Ratio < 1.0 means visavis used less CPU.\n"
        )
        out.write("\n## Every run, in the order run\n\n")
        out.write("\n".join(runs) + "\n")
    print(table)


def main(argv):
    if len(argv) == 3 and argv[1] == "parse":
        cmd_parse(argv[2])
    elif len(argv) in (4, 5) and argv[1] == "table":
        cmd_table(argv[2], argv[3], argv[4] if len(argv) == 5 else None)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
