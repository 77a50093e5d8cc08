// @ts-check
//! CPU time of process trees from /proc, for the measurements (not tests) in this folder.
import fs from 'node:fs';

export const SAMPLE_MS = 20_000;
const TICK = 100; // USER_HZ on Linux

/** Process ids of the Chromium whose command line carries `marker`, with all its descendants. */
export function processTree(/** @type {string} */ marker) {
  /** @type {Map<number, number>} pid → parent pid */
  const parent = new Map();
  const roots = [];
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!pid) continue;
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      parent.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker)) roots.push(pid);
    } catch {
      // the process ended meanwhile
    }
  }
  const tree = new Set(roots);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, ppid] of parent) {
      if (!tree.has(pid) && tree.has(ppid)) {
        tree.add(pid);
        grew = true;
      }
    }
  }
  return [...tree];
}

/** CPU seconds (user + system) used so far by `pids`. */
export function cpuSeconds(/** @type {number[]} */ pids) {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // gone
    }
  }
  return ticks / TICK;
}

