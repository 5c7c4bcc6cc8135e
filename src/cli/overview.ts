/** `kerf --help`: every command in one line or two (docs/cli.md is generated from it and each command's own usage). */
export const usage = `usage: kerf <command> [options]

commands:
  run       [--config FILE] [--state-dir DIR]   run the connector
  launch    [--config FILE] [--state-dir DIR]   the image's entry point: runs the active app version,
                                                installs verified updates, rolls back a failing one
  enroll    --token-file FILE                   enrol this instance over EST (installation, or after expiry)
  validate  --config FILE                       check config and mapping, report every error
  simulate  [--port N] [--load N --period MS]   simulated woodworking machine (OPC UA server)
  devcloud  [--port N] [--faults RATE --fault-seed N] | --issue-client NAME
                                                reference cloud (HTTPS ingest, dev CA); --faults 0.25
                                                fails a quarter of ingest requests (seeded)
  demo      [--seconds N]                       simulator, devcloud and connector on loopback
  health    [--state-dir DIR]                   exit 0 when the running connector is healthy
  status    [--json] [--state-dir DIR]          a summary of the running connector (no port)
  trust     list | accept THUMBPRINT | reject THUMBPRINT | add-issuer FILE | add-crl FILE
                                                the OPC UA trust store in <state-dir>/pki
  pki       status | renew [--replace]          the connector's OPC UA application certificate:
                                                expiry, and renewal with a staged certificate
  endpoints URL                                 a server's endpoints, security and certificate
  browse    URL [--root NODE] [--depth N]       a mapping-file skeleton of the server's variables
  release   init | pack | publish | withdraw | timestamp | rotate
                                                the signed update channel (TUF repository, bundles)
  update    status | check | apply [--json]     app versions and the last outcome; check the signed
                                                channel now; ask the launcher to install a newer release
  audit     [--json] [--verify] [--last N]      the local audit log of remote commands; --verify
                                                checks its hash chain

kerf <command> --help shows a command's options; kerf --version shows the version.
`;
