/**
 * How a long-running command learns that it should stop: SIGINT, SIGTERM, or its stdout closed
 * (the reader of a pipe went away). Listening starts at the first call, so a command that asks
 * first thing also catches a Ctrl-C during its own startup, instead of dying with things left behind.
 */
let stopping: Promise<string> | undefined;
let request: ((reason: string) => void) | undefined;
let requested = 0;

export function stopRequested(): Promise<string> {
  stopping ??= new Promise<string>((resolve) => {
    request = resolve;
    for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => requestStop(signal));
  });
  return stopping;
}

export function requestStop(reason: string): void {
  if (!request) return; // nothing runs that needs stopping
  requested++;
  if (requested === 1) request(reason);
  else if (reason.startsWith("SIG")) {
    // Cleaning up takes a few seconds at most; a third signal is someone who cannot wait.
    if (requested === 2) process.stderr.write("kerf: stopping; a third Ctrl-C quits at once, without cleaning up\n");
    else process.exit(130);
  }
}
