/* monitor-proto.h — how sandboxd and a sandbox's monitor talk.
 *
 * One `sandboxd-monitor` process per sandbox (containerd's shim / conmon,
 * done small).  It owns the sandbox: creates it with the runtime library,
 * holds its stdio and every exec's pipes, writes all output to disk, records
 * exit codes, enforces timeouts, and outlives the daemon: `kill -9` of the
 * daemon loses no sandbox, no exit code and no byte of output.
 *
 * Start (the monitor detaches: setsid, its own process group, stdio on
 * /dev/null except stderr to the log file given):
 *
 *   sandboxd-monitor --id SB --spec FILE --run-dir RUN --state-dir STATE [--log FILE]
 *
 * It exits 0 once it is listening on its socket and the sandbox has been
 * created (or has failed: see exit.json); the real work continues in a
 * forked-off child (the double fork makes init's parent the monitor, not the
 * daemon).  The first line it writes to stdout before that exit is the
 * status, a JSON object: {"ok":true,"pid":N} or
 * {"ok":false,"error":{"code","message"}}.  With ok:false it exits 1; when
 * the failure came after the spec was read (the sandbox could not be
 * created), exit.json and an "error" event ({"event":"error","at":T,
 * "message":S}) record it.
 *
 * The daemon starts monitors already connected: with --client-fd FD, FD is
 * one end of a connected unix stream socket whose other end the daemon
 * holds.  It is the monitor's first client (as if accepted on its socket),
 * the status is the first line the monitor sends on it, and the first
 * process exits 0 at once after one fork (a status of ok:false comes on the
 * connection too).  The daemon sends requests on it at once (an exec right
 * after the create): they wait in the socket and are answered in order once
 * the sandbox exists, or failed by the connection closing when it cannot be
 * created.  After a daemon restart the daemon reconnects through the socket
 * below, as ever.
 *
 * Zygote.  Normally those monitors are forked by a zygote, a process the
 * daemon starts once and restarts whenever it exits (a fresh program start
 * is a fallback):
 *
 *   sandboxd-monitor --zygote FD
 *
 * FD is a SOCK_SEQPACKET socket to the daemon.  Each datagram the daemon
 * sends is one request, a JSON object {"id","spec","run_dir","state_dir",
 * "log"} (at most SBXD_ZYGOTE_MAX_REQUEST bytes; log optional) carrying one
 * fd (SCM_RIGHTS): the monitor's end of its connection.  A fork of the
 * zygote made beforehand takes it and is the monitor, exactly as if started
 * with those options and --client-fd (it reports on the connection; its
 * command line reads so).  The zygote answers nothing: a request it cannot
 * serve closes the connection unanswered.  A connection that closes
 * before its status line while RECORDS/monitor.json does not exist had no
 * monitor (the zygote died with the request, say): the daemon then starts
 * one as a program and sends it again what it had sent.  The zygote exits
 * when the daemon's end closes (or the daemon dies: it is the daemon's
 * child, with a parent-death signal); its monitors live on.
 *
 * Files (all under RECORDS = STATE/records/SB; the daemon writes spec.json,
 * the monitor everything else; every whole-file write is atomic: tmp +
 * rename, or written before the directory is renamed into place):
 *   spec.json                 what to run (below)
 *   record.json, claim.json   the daemon's (registry.c, pool.c); the
 *                             monitor never reads them
 *   tunnels.json              the tunnels' host ports (below), while open
 *   monitor.json              {"pid":N,"started_at":T}  the monitor's own pid
 *   events.ndjson             lifecycle events appended by the monitor,
 *                             {"event":"started","at":T} ... one per line
 *   exit.json                 {"returncode":N,"finish_reason":R,"finished_at":T}
 *                             once the sandbox has finished; returncode is
 *                             null with finish_reason "error" (never created)
 *   procs.ndjson              the processes' records, one line appended per
 *                             change (a reader skips a line that does not
 *                             parse: a host crash may cut the last one):
 *       {"process_id","argv","started_at","pty":bool}   it started
 *       {"process_id","returncode":N,"finished_at":T,"eof":[..]}
 *                             it exited, written once its output is on disk
 *                             (or 1 s after it exited, if something it left
 *                             holds its pipes); "eof" names the streams that
 *                             had ended by then
 *       {"process_id","eof":["stdout"]}  a stream that ended after that
 *   procs/ID/stdout.OFFSET    output segments; OFFSET (decimal) is the byte
 *   procs/ID/stderr.OFFSET    offset of the segment's first byte in the stream.
 *                             The stream is the concatenation of its segments
 *                             in offset order (none, or no procs/ID: nothing
 *                             written yet; the directory is made with the
 *                             process's first output byte); when the
 *                             stream's kept bytes exceed spec.output_limit,
 *                             the oldest segments are deleted (the lowest
 *                             remaining OFFSET is the number of dropped
 *                             bytes).  A segment is at most output_limit/4
 *                             bytes.
 * Records of monitors from before procs.ndjson (kept readable for a daemon
 * upgraded under running sandboxes): procs/ID/info.json (the start line's
 * fields), procs/ID/exit.json (the exit line's, without process_id) and
 * procs/ID/NAME.eof (a stream that ended after exit.json).
 * The entrypoint's process ID is "entrypoint"; its exit line holds the
 * sandbox's returncode.  Names that start with a dot are made ahead and
 * belong to nobody yet (readers skip them): procs/.next is the next
 * process's directory, with the first segment of each stream in it (empty),
 * renamed to procs/ID at a process's first output byte (and remade when the
 * monitor is idle); RECORDS may come with it, with an empty procs.ndjson,
 * and with the monitor's log and monitor.json's temporary file, from the
 * daemon's spares (daemon/spare.c), so that no file is made on a create's
 * or an exec's way.
 *
 * The files procs/.next holds (the daemon's spares make them too). */
#define SBXD_NEXT_FILES "stdout.0", "stderr.0"
/*
 * spec.json: {"image_layers":[...], "env":["K=V"...], "workdir":"/",
 *   "entrypoint":[...]|null, "hostname":S, "uid":0, "gid":0, "no_userns":false,
 *   "memory_bytes":N, "pids_max":N, "cpu_weight":N, "cpu_quota_us":N,
 *   "cpu_period_us":N, "timeout_s":N, "idle_timeout_s":N|null,
 *   "output_limit":N, "cgroup_parent":"sandboxd", "state_spare":S}
 * (state_spare, optional: the name of a state dir made ahead for the
 * runtime, sbx_state_spare_make(); cfg.state_spare)
 *
 * Network (all optional): "network":{"bridge":NAME,"subnet":"A.B.C.D/P"}
 * puts the sandbox on the daemon's bridge (eth0 from the zygote's pool, or
 * made by the monitor: sbx_netns_make()); "block_network":true gives it
 * loopback only; "cidr_allowlist":["A.B.C.D/P",..] (with "network") limits
 * its destinations (sbx_network_allow(), in place before anything runs,
 * cleared before its address is released); "resolv_conf":PATH is bound
 * read-only at its /etc/resolv.conf.
 *
 * "disk_mib" (optional, 16..2^24): the writable layer's cap (cfg.disk_mib).
 *
 * "mounts" (optional): [{"root":ABS,"path":REL,"dst":ABS,"readonly":BOOL}..]
 * (at most SBX_MAX_MOUNTS): binds into the sandbox (struct sbx_mount:
 * opened beneath root, never through a symlink out of it).
 *
 * "readiness_probe" (optional): {"tcp":PORT} (a connection to PORT on the
 * sandbox's own loopback, from a socket made in its network namespace) or
 * {"exec":[argv]} (run like an exec, its returncode 0 passes; not a
 * process of the sandbox's, not activity), every "interval_ms" (default
 * 100) from the start (or the claim).  On a pass the monitor records the
 * event "ready" and sends {"ev":"event","event":"ready"}; after 5 minutes
 * without one it stops probing and the sandbox runs on.
 *
 * Tunnels (optional): "ports":[{"port":N,"tls":BOOL}..] (at most 16),
 * "tunnel_bind":"A.B.C.D" (default 127.0.0.1), and with a tls port
 * "tls_cert":PATH,"tls_key":PATH (PEM; the client's side of its
 * connections is TLS with them, the sandbox sees plain TCP).  Once
 * the sandbox has started (after the status line) the monitor listens on
 * tunnel_bind at a free port per port, writes tunnels.json
 * {"PORT":{"host","port","url","tls"}} and sends {"ev":"tunnels",
 * "tunnels":{..}}; "status" replies carry "tunnels" too.  Each connection
 * is forwarded to PORT on the sandbox's own loopback (a socket made in its
 * network namespace), both ways with back-pressure and half-closes; an
 * open one is activity for idle_timeout_s.  All close when the sandbox
 * ends.  A listener that cannot be made ends the sandbox as "error".
 *
 * "pooled":true (optional): a sandbox made ahead of any request (the
 * daemon's pool, daemon/pool.c).  Its entrypoint must be null and it has no
 * timeouts; the monitor creates it idle, records no "scheduled"/"started"
 * event and refuses execs until a "claim" (below) puts it to use.
 *
 * Socket: RUN/monitors/SB.sock, a unix stream socket, mode 0600; one client
 * (the daemon) at a time (a new connection replaces the old).  Messages are
 * JSON objects, one per line, UTF-8, at most 1 MiB each.
 *
 * Daemon → monitor requests carry "seq" (integer); the monitor answers each
 * with {"seq":n,"ok":true,...} or {"seq":n,"ok":false,"error":{"code","message"}}
 * where code is an API.md code (invalid_argument, not_found,
 * failed_precondition, resource_exhausted, internal):
 *   {"op":"exec","id":"pr-..","argv":[..],"env":[..],"workdir":"/",
 *    "uid":0,"gid":0,"stdout":"pipe|devnull","stderr":"pipe|devnull|stdout",
 *    "pty":{"rows":24,"cols":80}|null,"timeout_s":N|null}      → ok + "pid"
 *   {"op":"stdin","id":"pr-..|entrypoint","data":"<base64>","eof":bool} → ok
 *   {"op":"signal","id":"pr-..|entrypoint","signal":N}         → ok
 *   {"op":"resize","id":"pr-..","rows":R,"cols":C}             → ok
 *   {"op":"terminate"}                                         → ok (idempotent)
 *   {"op":"stats"} → ok +
 * "stats":{"cpu_usage_ns","memory_current","memory_peak","pids_current","oom_kills"}
 *   {"op":"activity"}                  → ok (resets the idle timer)
 *   {"op":"status"} → ok + "state":"running|finished", "processes":[{"id","returncode"}...],
 *                    and while running "init_pid" (the sandbox's init, host pid)
 *                     (returncode null until exit.json exists; once finished
 *                     also "returncode" and "finish_reason" of the sandbox)
 *   {"op":"claim","env":[..],"entrypoint":[..]|null,"workdir":"/",
 *    "memory_bytes":N,"pids_max":N,"cpu_weight":N,"cpu_quota_us":N,
 *    "cpu_period_us":N,"timeout_s":N,"idle_timeout_s":N|null}
 *        → a pooled sandbox only, once: sets the nonzero limits
 *          (sbx_sandbox_set_limits()), starts the entrypoint if any
 *          (sbx_exec_config.entrypoint: its exit ends the sandbox, as a
 *          created entrypoint's), makes env/workdir the defaults of later
 *          execs, starts the timeouts from now, records "scheduled" and
 *          "started"; ok + what "status" answers.  On failure (an
 *          entrypoint that cannot start) the monitor records an "error"
 *          event and ends the sandbox with finish_reason "error" and a
 *          null returncode.
 *   {"op":"shutdown"} → ok; the monitor terminates the sandbox if running,
 *                       destroys it (cgroups, mounts, dirs) and exits; the
 *                       records stay (the daemon deletes them).
 *
 * Monitor → daemon events (no "seq"), sent as things happen:
 *   {"ev":"output","id":"pr-..","stream":"stdout","size":N}  (total bytes
 *       written so far; coalesced, but the first write after a quiet period
 *       is announced at once)
 *   {"ev":"eof","id":..,"stream":..}
 *   {"ev":"exit","id":..,"returncode":N}
 *   {"ev":"event","event":"ready|...","at":T}
 *   {"ev":"finished","returncode":N,"finish_reason":"exited|terminated|timeout|idle_timeout|oom|error"}
 * A daemon that (re)connects learns the current state from the files and
 * {"op":"status"}; events are hints, the files are the truth.
 *
 * After the sandbox has finished and its output is on disk, the monitor
 * destroys the sandbox and exits; the records stay until the daemon deletes
 * them.  Times (T) are seconds since the epoch as a JSON real.
 */
#ifndef SBXD_MONITOR_PROTO_H
#define SBXD_MONITOR_PROTO_H

#define SBXD_MONITOR_MAX_MESSAGE (1024 * 1024)
#define SBXD_ZYGOTE_MAX_REQUEST  (16 * 1024)
#define SBXD_ENTRYPOINT_ID       "entrypoint"

#endif
