/* sbx.h — the sandboxd runtime: (image layers, config) → a hardened, running
 * sandbox that can be exec'd into and torn down leaving nothing behind.
 *
 * This is the library's only public header.  Every function returns >= 0 on
 * success or a negative errno, and fills the sbx_error passed last with the
 * errno and a message naming what failed ("mount overlay on `/run/...`").
 *
 * Threading: sbx_sandbox_create() and sbx_sandbox_exec() clone namespaces and
 * must be called from a single-threaded process (the daemon's per-sandbox
 * monitor, or a command-line tool), never from a process that runs threads.
 * The caller becomes the parent of the sandbox's init and of every exec'd
 * process, and reaps them through the functions below.
 */
#ifndef SBX_H
#define SBX_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SBX_PUBLIC __attribute__((visibility("default")))

typedef struct sbx_error {
    int code;          /* positive errno */
    char message[512]; /* what failed, naming the path or value involved */
} sbx_error;

/* Resource limits; a zero field means "no limit" / "default". */
struct sbx_limits {
    uint64_t memory_bytes;  /* hard limit; OOM kills the whole sandbox */
    int64_t pids_max;       /* max tasks */
    uint64_t cpu_weight;    /* relative weight, 1..10000 (cgroup v2 scale; 100 = default) */
    uint64_t cpu_quota_us;  /* hard cap: quota per period */
    uint64_t cpu_period_us; /* default 100000 */
};

struct sbx_rlimit {
    int resource; /* RLIMIT_* */
    uint64_t soft, hard;
};

/* A network namespace made ahead of time (see sbx_netpool_take()). */
struct sbx_netns {
    int net_fd;    /* the namespace */
    int sysfs_fd;  /* a detached read-only sysfs mounted from inside it */
    int pool_fd;   /* the pool it came from (told when it is closed), or -1 */
    uint32_t addr; /* eth0's IPv4 address (host byte order) on the sandboxes'
                    * bridge, its lease in RUN/leases; 0: loopback only */
};

/* The sandboxes' network (network.c): a bridge with the subnet's first
 * address, each sandbox's eth0 a veth on it (made by the namespace pool),
 * NAT to the outside, and a firewall: nothing from a sandbox to the host
 * itself, to private ranges (but the DNS servers on port 53) or to another
 * sandbox, nothing from outside into a sandbox. */
#define SBX_NETWORK_MAX_DNS 4
struct sbx_network {
    const char *bridge;  /* [a-z0-9]{1,12}, e.g. "sbx0" */
    uint32_t subnet;     /* network address, host byte order */
    unsigned prefix;     /* 8..28 */
    const char *run_dir; /* address leases go in RUN/leases */
    uint32_t dns[SBX_NETWORK_MAX_DNS];
    size_t n_dns;
};

/* A host directory or file bound into a sandbox (a volume, an allowed host
 * path).  The source is opened beneath `root` (trusted: the caller's own
 * path) without following a symlink or `..` out of it, and bound from that
 * fd, so that no rename or symlink swapped in meanwhile can redirect it.
 * With a user namespace the bind is idmapped: what host uid 0 owns is the
 * sandbox's root's.  Always nosuid and nodev.  The destination is made
 * when missing (a directory, or an empty file for a file); it may not
 * cross a symlink (so that one swapped in by another sandbox sharing a
 * volume cannot move the bind: CVE-2021-30465), nor be `/` or under
 * /proc, /sys or /dev.  Mounts are placed parents first. */
struct sbx_mount {
    const char *root; /* absolute host directory */
    const char *path; /* beneath root; NULL or "": root itself */
    const char *dst;  /* absolute path inside the sandbox */
    bool readonly;
};

#define SBX_MAX_MOUNTS 32

struct sbx_config {
    const char *id;            /* [A-Za-z0-9._-]{1,64}; names dirs and cgroups */
    const char *run_dir;       /* volatile state: default /run/sandboxd */
    const char *state_dir;     /* writable layers: default /var/lib/sandboxd */
    const char *const *layers; /* read-only lower dirs, top-most first, NULL-terminated */
    const char *const *argv;   /* entrypoint; NULL: init idles until terminated */
    const char *const *env;    /* "K=V", NULL-terminated; NULL: empty environment */
    const char *workdir;       /* default "/" */
    const char *hostname;      /* default: id */
    uid_t uid;                 /* user inside the sandbox (default 0) */
    gid_t gid;
    bool no_userns; /* run as real root: no user namespace (for workloads that need it) */
    struct sbx_limits limits;
    const struct sbx_rlimit *rlimits;
    size_t n_rlimits;
    int stdio[3];              /* entrypoint's stdin/stdout/stderr; -1: /dev/null */
    const char *cgroup_parent; /* relative to the caller's own cgroup; default "sandboxd" */
    /* A pre-made network namespace to use (the caller keeps and closes the
     * fds); NULL: make one.  It belongs to the initial user namespace: the
     * sandbox's root has no capability over it (see sbx_netpool_start()). */
    const struct sbx_netns *netns;
    /* The name of a state directory made ahead by sbx_state_spare_make(): a
     * create takes it (renamed to the sandbox's) instead of making its
     * writable layer's directories.  NULL, or one that is gone: made here. */
    const char *state_spare;
    /* A host file bound read-only at the sandbox's /etc/resolv.conf (the
     * daemon's, naming the DNS servers its network lets through); NULL:
     * the image's own. */
    const char *resolv_conf;
    /* Binds into the sandbox (at most SBX_MAX_MOUNTS). */
    const struct sbx_mount *mounts;
    size_t n_mounts;
    /* A cap on the writable layer, in MiB (at least 16), 0: none.  The
     * layer then lives in a file system of that size (sbx_disk_create(),
     * made at the create: ~30 ms more): past it, writes fail with ENOSPC
     * inside and the host's disk is untouched. */
    uint64_t disk_mib;
};

enum sbx_finish {
    SBX_FINISH_RUNNING = 0,
    SBX_FINISH_EXITED,     /* the entrypoint exited (or was killed by a signal) */
    SBX_FINISH_TERMINATED, /* sbx_sandbox_terminate() */
    SBX_FINISH_OOM,        /* the memory limit was hit: everything was killed */
};

struct sbx_exit {
    enum sbx_finish reason;
    int returncode; /* exit status, 128+N for signal N, 137 on terminate and OOM */
};

struct sbx_stats {
    uint64_t cpu_usage_ns;
    uint64_t memory_current;
    uint64_t memory_peak;
    uint64_t pids_current;
    uint64_t oom_kills;
};

typedef struct sbx_sandbox sbx_sandbox;

/* Creates and starts a sandbox.  On success *ret owns it; free it with
 * sbx_sandbox_destroy(), which also terminates it. */
SBX_PUBLIC int sbx_sandbox_create(const struct sbx_config *cfg, sbx_sandbox **ret, sbx_error *err);
/* Does now, once, what every create of this process and of its forks would
 * otherwise do first: loads the seccomp program (compiled, or from the
 * cache in run_dir) and finds the cgroup hierarchies.  For a process that
 * forks creators (the daemon's monitor zygote); optional. */
SBX_PUBLIC int sbx_prepare(const char *run_dir, sbx_error *err);

/* The sandbox's init, as a pid in the caller's namespace and as a pidfd. */
SBX_PUBLIC pid_t sbx_sandbox_pid(const sbx_sandbox *sb);
SBX_PUBLIC int sbx_sandbox_pidfd(const sbx_sandbox *sb);

/* An fd that becomes readable (POLLIN or POLLPRI) when the memory controller
 * reports an OOM kill, or -1 when there is no memory limit.  A monitor polls it
 * beside sbx_sandbox_pidfd() and then calls sbx_sandbox_poll(). */
SBX_PUBLIC int sbx_sandbox_oom_fd(const sbx_sandbox *sb);

/* An fd that becomes readable as soon as the entrypoint's returncode is
 * known (before the kernel has torn the sandbox's namespaces down), or when
 * init has died.  A monitor polls it, then calls sbx_sandbox_poll(). */
SBX_PUBLIC int sbx_sandbox_exit_fd(const sbx_sandbox *sb);

/* Non-blocking: 1 and *ret filled once the sandbox has finished, else 0.
 * "Finished" means the entrypoint has exited and its returncode is known;
 * everything else in the sandbox is then being killed, and
 * sbx_sandbox_destroy() waits for it to be gone.  An OOM kill anywhere in the
 * sandbox ends the whole sandbox. */
SBX_PUBLIC int sbx_sandbox_poll(sbx_sandbox *sb, struct sbx_exit *ret, sbx_error *err);

/* Blocks until the sandbox finishes or timeout_ms passes (-1: forever).
 * Returns 1 when finished, 0 on timeout. */
SBX_PUBLIC int sbx_sandbox_wait(sbx_sandbox *sb, int timeout_ms, struct sbx_exit *ret,
                                sbx_error *err);

/* Kills everything inside (idempotent).  The sandbox then finishes with
 * SBX_FINISH_TERMINATED and returncode 137 unless it had already finished. */
SBX_PUBLIC int sbx_sandbox_terminate(sbx_sandbox *sb, sbx_error *err);

/* Terminates if needed, reaps, removes cgroups, mounts, upper dirs and run
 * dirs, releases the uid range, and frees sb.  NULL is accepted. */
SBX_PUBLIC int sbx_sandbox_destroy(sbx_sandbox *sb, sbx_error *err);

SBX_PUBLIC int sbx_sandbox_stats(sbx_sandbox *sb, struct sbx_stats *ret, sbx_error *err);

/* Changes a running sandbox's cgroup limits: every nonzero field of lim is
 * written, a zero one left as it is.  A memory limit can be set only on a
 * sandbox created with one (its OOM notification is set up at create). */
SBX_PUBLIC int sbx_sandbox_set_limits(sbx_sandbox *sb, const struct sbx_limits *lim,
                                      sbx_error *err);

/* Mounts an image into the running sandbox at dst (made when missing,
 * never through a symlink; not /, /proc, /sys, /dev): its layers (top-most
 * first, read-only and idmapped) under a writable layer of the mount's own
 * in the sandbox's state dir, or, with no layers, an empty directory
 * there.  Nosuid, nodev.  What is written there is the sandbox's root's;
 * it goes with the sandbox. */
SBX_PUBLIC int sbx_sandbox_mount_image(sbx_sandbox *sb, const char *const *layers, const char *dst,
                                       sbx_error *err);

/* Once the sandbox has finished: waits for everything in it to be gone and
 * moves its writable layer (the overlay's upper dir) to dest, on the same
 * file system, for sbx_layer_commit(); *ret_uid_base: the host uid that
 * was its root (0 without a user namespace).  sbx_sandbox_destroy() then
 * removes the rest. */
SBX_PUBLIC int sbx_sandbox_save_upper(sbx_sandbox *sb, const char *dest, uid_t *ret_uid_base,
                                      sbx_error *err);

/* The host directory holding the sandbox's writable layer (its overlay upper
 * dir).  Valid until sbx_sandbox_destroy(). */
SBX_PUBLIC const char *sbx_sandbox_upper_dir(const sbx_sandbox *sb);

/* Makes a sandbox's state directory ahead of time, named `name`
 * (of a sandbox id's form), for a later create's cfg.state_spare: making a
 * directory allocates an inode, which on a busy disk costs a create far
 * more than a rename.  Safe from any thread. */
SBX_PUBLIC int sbx_state_spare_make(const char *state_dir, const char *name, sbx_error *err);
/* Removes every spare made in state_dir (at a caller's start: none of them
 * is anybody's). */
SBX_PUBLIC void sbx_state_spares_clear(const char *state_dir);

/* A file system of a fixed size (runtime/disk.c): img becomes a sparse
 * ext4 image of size_mib MiB (at least 16; mkfs.ext4 from e2fsprogs). */
SBX_PUBLIC int sbx_disk_create(const char *img, uint64_t size_mib, sbx_error *err);
/* Mounts img at dir (nosuid, nodev) unless dir is a mount point already:
 * through the loop device that already has img, else a new one that goes
 * with the last mount. */
SBX_PUBLIC int sbx_disk_mount(const char *img, const char *dir, sbx_error *err);
SBX_PUBLIC bool sbx_is_mount_point(const char *dir);

/* A sandbox's writable layer (an overlay upper dir) as an image layer
 * (runtime/layer.c): owners shifted down from the sandbox's uid range
 * that starts at uid_base (the upper dir's own owner; 0: no user
 * namespace), anything outside it becoming 65534; opaque directories marked
 * for overlays with and without userxattr; file capabilities dropped; the
 * result synced.  Never follows a symlink nor enters a mount point.
 * commit: in place (the sandbox has ended); copy: into dst, which it makes
 * (a sandbox that runs on: a snapshot). */
SBX_PUBLIC int sbx_layer_commit(const char *dir, uid_t uid_base, sbx_error *err);
SBX_PUBLIC int sbx_layer_copy(const char *src, const char *dst, uid_t uid_base, sbx_error *err);
/* The same from a directory open at src_fd (which it closes; `what` names
 * it in errors): a directory resolved inside a sandbox's root. */
SBX_PUBLIC int sbx_layer_copy_at(int src_fd, const char *what, const char *dst, uid_t uid_base,
                                 sbx_error *err);
/* An image's layers (top-most first, NULL-terminated) merged into one tree
 * at dst (which it makes): each layer over the ones below, whiteouts
 * removing, opaque directories replacing; owners as they are.  For export. */
SBX_PUBLIC int sbx_layers_flatten(const char *const *layers, const char *dst, sbx_error *err);

/* rm -rf that a tree's owner cannot redirect: no symlink followed, no
 * mount point entered (EBUSY), any depth with one directory fd.  For a
 * caller's trees that sandboxes wrote in (volumes). */
SBX_PUBLIC int sbx_rm_rf(const char *path, sbx_error *err);
/* The same for dirfd's entry name. */
SBX_PUBLIC int sbx_rm_rf_at(int dirfd, const char *name, sbx_error *err);

/* Removes whatever a sandbox of this id left behind (after a crash): cgroups,
 * directories, its uid range.  Kills any process still in its cgroups. */
SBX_PUBLIC int sbx_sandbox_cleanup(const char *run_dir, const char *state_dir,
                                   const char *cgroup_parent, const char *id, sbx_error *err);

struct sbx_exec_config {
    const char *const *argv; /* required */
    const char *const *env;  /* NULL: empty environment */
    const char *workdir;     /* default "/" */
    uid_t uid;
    gid_t gid;
    int stdio[3]; /* ignored with pty; -1: /dev/null */
    bool pty;     /* stdio on a new terminal from the sandbox's own devpts */
    /* The sandbox's entrypoint, started late: only in a sandbox created
     * without argv (its init idling) and only once.  Its exit ends the
     * sandbox as a created entrypoint's does (sbx_sandbox_poll() reports
     * its returncode) and init forwards signals to it; no returncode comes
     * on the process's status socket, which closes when the sandbox ends.
     * This is how a sandbox made ahead of time is put to use. */
    bool entrypoint;
    unsigned short rows, cols;
};

struct sbx_process {
    pid_t pid;      /* in the caller's pid namespace */
    int pidfd;      /* the process, for signals (pidfd_send_signal); owned by the caller */
    int pty_master; /* with pty, the terminal's master side (owned by the caller), else -1 */
    /* Where the returncode comes (a socket: the sandbox's init reaps the
     * process and sends it): poll status_pidfd for POLLIN, then
     * sbx_process_wait().  status_pid is -1 (no helper process). */
    pid_t status_pid;
    int status_pidfd;
};

/* Runs a process inside a running sandbox: its namespaces and cgroup, the same
 * seccomp filter, capabilities and no_new_privs as the entrypoint (the
 * sandbox's init starts it).  Returns once it has exec'd; fails with the
 * exec's errno (-ENOENT...) or -ESRCH once the sandbox has finished. */
SBX_PUBLIC int sbx_sandbox_exec(sbx_sandbox *sb, const struct sbx_exec_config *cfg,
                                struct sbx_process *ret, sbx_error *err);

/* sbx_sandbox_exec() in two halves, so that the caller does its own work
 * (records, say) while init starts the process.  _begin() sends the request
 * and returns, in *ret_pending, the fd its answer comes on; _end() (with
 * the same cfg) takes the fd, whatever happens, and waits for the answer. */
SBX_PUBLIC int sbx_sandbox_exec_begin(sbx_sandbox *sb, const struct sbx_exec_config *cfg,
                                      int *ret_pending, sbx_error *err);
SBX_PUBLIC int sbx_sandbox_exec_end(sbx_sandbox *sb, const struct sbx_exec_config *cfg, int pending,
                                    struct sbx_process *ret, sbx_error *err);

/* Reaps an exec'd process: 1 and *ret_returncode (128+N for a signal) once it
 * has exited, 0 while it runs (with timeout_ms = 0), or -errno.  timeout_ms -1
 * blocks.  Closes pidfd and status_pidfd once reaped. */
SBX_PUBLIC int sbx_process_wait(struct sbx_process *p, int timeout_ms, int *ret_returncode,
                                sbx_error *err);

/* Sets a pty's window size. */
SBX_PUBLIC int sbx_pty_resize(int pty_master, unsigned short rows, unsigned short cols,
                              sbx_error *err);

/* ---- network namespaces made ahead of time ----
 *
 * Making a network namespace is the costliest step of a sandbox's start.  A
 * pool helper process makes them before they are needed: loopback up,
 * ip_unprivileged_port_start 0, ping_group_range open, with a read-only
 * sysfs of its own.  They belong to the initial user namespace, so the
 * sandbox's root cannot reconfigure its network or open raw sockets.
 * Namespaces are never reused: each is made for one sandbox. */
typedef struct sbx_netpool sbx_netpool;

#define SBX_NETPOOL_MAX 1024

/* Forks the pool helper, which keeps `size` namespaces ready and exits with
 * its caller.  Call it from a single-threaded process. */
/* With net, each namespace gets its eth0 on net's bridge (the bridge must
 * be set up: sbx_network_setup()); NULL: loopback only. */
SBX_PUBLIC int sbx_netpool_start(unsigned size, const struct sbx_network *net, sbx_netpool **ret,
                                 sbx_error *err);
/* The consumer's end of the pool's socket, for sbx_netpool_take(). */
SBX_PUBLIC int sbx_netpool_fd(const sbx_netpool *p);
/* Stops the helper and frees p; the namespaces not taken are freed. */
SBX_PUBLIC void sbx_netpool_stop(sbx_netpool *p);
/* In a process forked after sbx_netpool_start(): lets go of p without
 * stopping the helper (the parent's) and returns the consumer socket, now
 * the caller's to take from and close.  The helper stops once every copy
 * of the socket is closed. */
SBX_PUBLIC int sbx_netpool_detach(sbx_netpool *p);
/* Takes a ready namespace, without blocking: 0, or -EAGAIN when none is
 * ready (make one: pass cfg->netns NULL), or another -errno when the pool
 * has stopped.  The caller owns the fds: sbx_netns_close() them once the
 * sandbox is created, which also has the pool make the next one. */
SBX_PUBLIC int sbx_netpool_take(int pool_fd, struct sbx_netns *ret, sbx_error *err);
SBX_PUBLIC void sbx_netns_close(struct sbx_netns *ns);
/* The helper's loop, for a caller that runs the helper as a program of its
 * own (a daemon spawning it) on one end of a SOCK_SEQPACKET socketpair:
 * returns when the other end closes. */
SBX_PUBLIC int sbx_netpool_serve(int sock, unsigned size, const struct sbx_network *net);

/* Makes a network namespace as the pool's helper does (with eth0 on net's
 * bridge when net is given), for a caller whose pool has none ready; the
 * calling thread stays in its own namespace.  Release with
 * sbx_netns_close(). */
SBX_PUBLIC int sbx_netns_make(const struct sbx_network *net, struct sbx_netns *ret, sbx_error *err);
/* Parses "A.B.C.D/P" into net->subnet and net->prefix. */
SBX_PUBLIC int sbx_network_parse(const char *cidr, struct sbx_network *net, sbx_error *err);
/* Makes (or updates) the bridge, its address, the firewall table
 * (nftables `inet sandboxd_BRIDGE`, replaced whole) and turns IPv4
 * forwarding on; clears leases nobody claimed.  Idempotent. */
SBX_PUBLIC int sbx_network_setup(const struct sbx_network *net, sbx_error *err);
/* Lets the sandbox at addr (its eth0's) reach only these destinations
 * ("A.B.C.D" or "A.B.C.D/P"; none: nothing), besides the DNS servers on
 * port 53; the private ranges stay out of reach.  Call before anything
 * runs in the sandbox; clear it before its address is released.  Kept
 * across sbx_network_setup() (a daemon restart); one whose sandbox's lease
 * is gone is removed then. */
SBX_PUBLIC int sbx_network_allow(const struct sbx_network *net, uint32_t addr,
                                 const char *const *cidrs, size_t n, sbx_error *err);
SBX_PUBLIC int sbx_network_allow_clear(const struct sbx_network *net, uint32_t addr,
                                       sbx_error *err);
/* Removes the firewall table and the bridge (with no sandbox on it). */
SBX_PUBLIC int sbx_network_teardown(const struct sbx_network *net, sbx_error *err);

/* Removes the cgroup parent (config cgroup_parent, default "sandboxd") in
 * every hierarchy where no sandbox uses it any more: for one-shot callers
 * that leave nothing behind.  -EBUSY where sandboxes still run under it. */
SBX_PUBLIC int sbx_cgroup_prune(const char *cgroup_parent, sbx_error *err);

/* "v1" or "v2": the cgroup backend this host uses. */
SBX_PUBLIC const char *sbx_cgroup_mode(void);

#ifdef __cplusplus
}
#endif

#endif
