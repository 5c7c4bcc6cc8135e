import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/**
 * The TCP sockets that process `pid` listens on, as "addr:port" (hex address as the kernel writes
 * it), read from /proc: the LISTEN rows (state 0A) of /proc/<pid>/net/tcp and tcp6 whose inode is
 * one of the process's own open sockets (/proc/<pid>/fd/* → socket:[inode]). The net files list
 * the whole network namespace, so the inode match is what makes it this process's. Linux only.
 */
export function listeningSockets(pid: number): string[] {
  const own = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) own.add(m[1]!);
    } catch {
      // closed between readdir and readlink
    }
  }
  const out: string[] = [];
  for (const table of ["tcp", "tcp6"]) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, "utf8");
    } catch {
      continue; // no IPv6 in this kernel
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      if (f.length > 9 && f[3] === "0A" && own.has(f[9]!)) out.push(`${table} ${f[1]}`);
    }
  }
  return out;
}
