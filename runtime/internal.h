/* internal.h — what the runtime's files share.  Nothing here is exported:
 * the library is built with -fvisibility=hidden and only SBX_PUBLIC symbols
 * of sbx.h leave it.  Internal non-static names carry the sbx__ prefix. */
#ifndef SBX_INTERNAL_H
#define SBX_INTERNAL_H

#include "sbx.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- ownership through cleanup attributes (crun / systemd style) ---- */

static inline void sbx__freep(void *p)
{
    free(*(void **)p);
}
static inline void sbx__closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}
static inline void sbx__closedirp(DIR **d)
{
    if (*d)
        closedir(*d);
}

#define _cleanup_free_     __attribute__((cleanup(sbx__freep)))
#define _cleanup_close_    __attribute__((cleanup(sbx__closep)))
#define _cleanup_closedir_ __attribute__((cleanup(sbx__closedirp)))

/* Hands ownership on: returns the value and resets the variable. */
#define steal_pointer(pp)                                                                          \
    ({                                                                                             \
        __typeof__(*(pp)) _p = *(pp);                                                              \
        *(pp) = NULL;                                                                              \
        _p;                                                                                        \
    })
#define steal_fd(fdp)                                                                              \
    ({                                                                                             \
        int _fd = *(fdp);                                                                          \
        *(fdp) = -1;                                                                               \
        _fd;                                                                                       \
    })

#define SBX_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- errors ---- */

/* Fills err (may be NULL) with errnum and a formatted message; returns -errnum.
 * errnum is a positive errno. */
int sbx__error(sbx_error *err, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- small file helpers (util.c) ---- */

/* Writes a whole string to path (O_WRONLY|O_CLOEXEC, no create). */
int sbx__write_file(const char *path, const char *data, sbx_error *err);
/* Same, relative to dirfd. */
int sbx__write_file_at(int dirfd, const char *name, const char *data, sbx_error *err);
/* Reads at most size-1 bytes, NUL-terminated; returns the length. */
int sbx__read_file_at(int dirfd, const char *name, char *buf, size_t size, sbx_error *err);
/* mkdir -p with the given mode for the directories it creates. */
int sbx__mkdir_p(const char *path, mode_t mode, sbx_error *err);
/* rm -rf beneath dirfd, never following a symlink, never crossing a mount. */
int sbx__rm_rf_at(int dirfd, const char *name, sbx_error *err);
int sbx__rm_rf(const char *path, sbx_error *err);

/* ---- cgroups (cgroup.c, cgroup-v1.c, cgroup-v2.c) ---- */

/* One interface, two backends.  A sandbox's cgroup lives at
 * <caller's own cgroup>/<parent>/<id> in every hierarchy the backend uses. */
struct sbx__cgroup;

struct sbx__cgroup_ops {
    const char *name; /* "v1" | "v2" */
    /* Processes are born in the cgroup (clone3 CLONE_INTO_CGROUP with
     * cg->clone_fd) rather than moved in: create it before the clone. */
    bool clone_into;
    int (*create)(const char *parent, const char *id, const struct sbx_limits *lim,
                  struct sbx__cgroup **ret, sbx_error *err);
    /* Moves pid into the sandbox's cgroup in every hierarchy.  pid may be
     * the (single-threaded) caller itself. */
    int (*attach)(struct sbx__cgroup *cg, pid_t pid, sbx_error *err);
    /* Fds through which a single-threaded process moves itself in (by
     * writing "0" to each: sbx__cgroup_join_self()), opened by the caller
     * for a process that could not open them; returns how many, or 0 when
     * the backend has none (then the caller uses attach). */
    int (*open_self_attach)(struct sbx__cgroup *cg, int *fds, size_t max, sbx_error *err);
    /* A pollable fd signalled on an OOM kill (-1 without a memory limit). */
    int (*oom_fd)(struct sbx__cgroup *cg);
    /* Writes every nonzero limit of lim; a zero leaves that one as it is. */
    int (*update)(struct sbx__cgroup *cg, const struct sbx_limits *lim, sbx_error *err);
    int (*stats)(struct sbx__cgroup *cg, struct sbx_stats *ret, sbx_error *err);
    /* SIGKILLs every process in the cgroup (v2 cgroup.kill, v1 freeze+kill). */
    int (*kill)(struct sbx__cgroup *cg, sbx_error *err);
    /* Kills what is left, waits for the cgroup to empty, removes it and frees cg. */
    int (*destroy)(struct sbx__cgroup *cg, sbx_error *err);
    /* Removes the cgroups of a sandbox by id (crash recovery); kills what is in them. */
    int (*remove)(const char *parent, const char *id, sbx_error *err);
    /* Removes <own>/<parent> in every hierarchy where it is empty; -EBUSY
     * where sandboxes still use it. */
    int (*prune)(const char *parent, sbx_error *err);
};

extern const struct sbx__cgroup_ops sbx__cgroup_v1_ops;
void sbx__cgroup_v1_warm(void);
extern const struct sbx__cgroup_ops sbx__cgroup_v2_ops;

/* Writes "0" to each fd of open_self_attach: the calling thread joins. */
int sbx__cgroup_join_self(const int *fds, size_t n, sbx_error *err);

/* The backend this host needs: v2 when /sys/fs/cgroup is a cgroup2 mount. */
const struct sbx__cgroup_ops *sbx__cgroup_ops(void);

/* ---- cgroup backends: shared state and helpers (cgroup*.c and tests only) ---- */

/* Points the v2 backend at another cgroup2 mount (NULL: the default,
 * /sys/fs/cgroup), so tests can drive it on a hybrid host's
 * /sys/fs/cgroup/unified.  Not thread-safe: call before any create. */
void sbx__cgroup_v2_set_root(const char *root);
/* Makes sbx__cgroup_ops() return ops (NULL: detect again), so tests can
 * run whole sandboxes on either backend.  Not thread-safe. */
void sbx__cgroup_force_ops(const struct sbx__cgroup_ops *ops);

/* Controllers a directory of a sandbox's cgroup holds. */
enum {
    SBX__CG_MEMORY = 1u << 0,
    SBX__CG_PIDS = 1u << 1,
    SBX__CG_CPU = 1u << 2,
    SBX__CG_CPUACCT = 1u << 3,
    SBX__CG_FREEZER = 1u << 4,
};

#define SBX__CGROUP_MAX_DIRS 8

/* One layout for both backends, so that the ops tables agree on the type:
 * v1 keeps one directory per hierarchy (co-mounted controllers share one),
 * v2 keeps exactly one. */
struct sbx__cgroup {
    const struct sbx__cgroup_ops *ops;
    size_t n_dirs;
    char *dirs[SBX__CGROUP_MAX_DIRS]; /* absolute: <mount>/<own>/<parent>/<id> */
    unsigned controllers[SBX__CGROUP_MAX_DIRS];
    int oom_fd; /* -1 without a memory limit */
    /* v2: the directory, for clone3's CLONE_INTO_CGROUP (a process born
     * there needs no move, see v1_attach); -1 on v1 */
    int clone_fd;
};

/* Checks parent (NULL allowed) and id; fills *ret_parent with the parent
 * to use ("sandboxd" for NULL). */
int sbx__cgroup_check_names(const char *parent, const char *id, const char **ret_parent,
                            sbx_error *err);
/* This process's cgroup path from /proc/self/cgroup: in the v1 hierarchy
 * holding controller ("memory", "name=systemd"), or in v2 for NULL. */
int sbx__cgroup_own_path(const char *controller, char **ret, sbx_error *err);
/* The directory of this process's own cgroup in the v1 hierarchy holding
 * controller, found through /proc/self/mountinfo; -ENOENT when not mounted. */
int sbx__cgroup_v1_own_dir(const char *controller, char **ret, sbx_error *err);
/* "<base>/<own>/<rest>" without doubled slashes (rest may be NULL). */
int sbx__cgroup_join(const char *base, const char *own, const char *rest, char **ret,
                     sbx_error *err);

int sbx__cgroup_write(const char *dir, const char *file, const char *value, sbx_error *err);
/* sbx__cgroup_write() of a limit: a missing file is -EOPNOTSUPP (the kernel
 * cannot enforce it). */
int sbx__cgroup_write_limit(const char *dir, const char *file, const char *value, sbx_error *err);
int sbx__cgroup_read(const char *dir, const char *file, char *buf, size_t size, sbx_error *err);
int sbx__cgroup_read_u64(const char *dir, const char *file, uint64_t *ret, sbx_error *err);
/* The value of the "key value" line of a flat-keyed file; -ENOENT if absent. */
int sbx__cgroup_read_key(const char *dir, const char *file, const char *key, uint64_t *ret,
                         sbx_error *err);
bool sbx__cgroup_file_exists(const char *dir, const char *file);

/* SIGKILLs every process listed in dir and its descendant cgroups; returns
 * how many were listed. */
int sbx__cgroup_kill_listed(const char *dir, sbx_error *err);
/* Kills (with kill, repeatedly), waits up to ~5 s for every directory of cg
 * to empty, and removes them with their descendants; missing ones are fine. */
int sbx__cgroup_teardown(struct sbx__cgroup *cg,
                         int (*kill)(struct sbx__cgroup *cg, sbx_error *err), sbx_error *err);
/* sbx__cgroup_teardown(), then frees cg (which may be NULL) whatever happened. */
int sbx__cgroup_destroy(struct sbx__cgroup *cg,
                        int (*kill_fn)(struct sbx__cgroup *cg, sbx_error *err), sbx_error *err);
struct sbx__cgroup *sbx__cgroup_new(const struct sbx__cgroup_ops *ops);
/* Frees cg and closes its oom fd; NULL is accepted. */
void sbx__cgroup_free(struct sbx__cgroup *cg);

/* ---- seccomp (seccomp.c) ---- */

/* Builds the sandbox's seccomp program once per process (libseccomp, exported
 * to BPF) so that children only need sbx__seccomp_apply(). */
int sbx__seccomp_prepare(sbx_error *err);
/* The same, through a compiled program cached in cache_dir (see seccomp.c). */
int sbx__seccomp_prepare_cached(const char *cache_dir, sbx_error *err);
/* Loads the prepared program into the calling thread (after fork, before
 * execve).  Requires no_new_privs set or CAP_SYS_ADMIN.  Returns 0 or -errno. */
int sbx__seccomp_apply(void);

/* ---- capabilities (caps.c) ---- */

/* Cuts the bounding set to Docker's default 14, sets permitted and effective
 * to them, clears inheritable and ambient.  Call after setresuid to the
 * sandbox's uid only if uid 0; for another uid call it before setresuid (the
 * kernel then clears permitted/effective as it does for any non-root user).
 * Returns 0 or -errno. */
int sbx__caps_drop(void);

/* For a process of the sandbox's init, which has dropped them: checks that
 * no capability beyond the defaults is permitted and none inheritable (one
 * capget), and only otherwise drops them as sbx__caps_drop() does. */
int sbx__caps_inherited(void);

/* The capabilities the sandbox keeps (CAP_*), for tests. */
extern const int sbx__default_caps[];
extern const size_t sbx__n_default_caps;

/* ---- uid ranges and idmapped layers (idmap.c) ---- */

#define SBX_UID_RANGE 65536

/* Reserves a host uid/gid range of SBX_UID_RANGE ids unique to this sandbox;
 * the reservation is a file under run_dir/uids named by the range's slot. */
int sbx__uid_range_alloc(const char *run_dir, const char *id, uid_t *ret_base, sbx_error *err);
void sbx__uid_range_free(const char *run_dir, const char *id);

/* A detached, idmapped clone of the directory tree at path: files owned by
 * host uid 0 appear owned by the userns's root.  Returns an fd for move_mount. */
int sbx__idmapped_tree(const char *path, int userns_fd, sbx_error *err);

/* ---- the sandbox itself (sandbox.c, rootfs.c, init.c, exec.c) ---- */

#define SBX_DEFAULT_RUN_DIR   "/run/sandboxd"
#define SBX_DEFAULT_STATE_DIR "/var/lib/sandboxd"
#define SBX_MAX_LAYERS        128

/* What a process inside the sandbox runs as: shared by the entrypoint and
 * every exec, so both get the same privileges. */
struct sbx__proc_spec {
    const char *const *argv;
    const char *const *env;
    const char *workdir;
    uid_t uid;
    gid_t gid;
    const struct sbx_rlimit *rlimits;
    size_t n_rlimits;
    /* The process already runs under the sandbox's seccomp filter (inherited
     * from init), so loading it again would only stack a second copy. */
    bool seccomp_inherited;
};

struct sbx_sandbox {
    char *id;
    char *run_root, *state_root; /* the roots given in sbx_config */
    char *run_dir;               /* <run_root>/sandboxes/<id> */
    char *state_dir;             /* <state_root>/sandboxes/<id> */
    char *upper_dir;
    char *work_dir;    /* overlay's work dir, beside upper_dir */
    uint64_t disk_mib; /* the writable layer's cap (disk.c), 0: none */
    char *state_spare; /* cfg.state_spare: a state dir made ahead, to take */
    char *cgroup_parent;
    bool userns;
    uid_t uid_base;
    uint32_t addr; /* eth0's address from the network namespace pool, 0: none */
    pid_t pid;
    int pidfd;
    int sync_fd; /* init's setup socket: EXIT arrives here, then EOF */
    bool reaped;
    const struct sbx__cgroup_ops *cgops;
    struct sbx__cgroup *cg;
    struct sbx_rlimit *rlimits;
    size_t n_rlimits;
    bool finished, terminated, oom;
    struct sbx_exit exit;
};

/* Messages on the setup socket (which stays open as the caller's line to
 * init), and on an exec's status socket:
 *   READY, ERROR      init → caller during setup; ERROR also on a status
 *                     socket when an exec fails
 *   EXIT              init → caller, .code the entrypoint's returncode, just
 *                     before init exits
 *   EXEC              caller → init: run a process (see struct
 *                     sbx__exec_wire), fds: the spec's memfd, the status
 *                     socket, then the stdio fds named in .code's bits
 *   PTY, PIDFD        on the status socket: the pty master (from the process,
 *                     before it execs), the process's pidfd (from init, once
 *                     it has exec'd)
 *   STATUS            on the status socket, .code the process's returncode */
enum {
    SBX__MSG_READY = 1,
    SBX__MSG_ERROR = 2,
    SBX__MSG_EXIT = 3,
    SBX__MSG_EXEC = 4,
    SBX__MSG_PTY = 5,
    SBX__MSG_PIDFD = 6,
    SBX__MSG_STATUS = 7,
};

/* EXEC's .code: which stdio fds follow the two fixed ones (bit i: fd i), and
 * whether the process gets a pty instead. */
#define SBX__EXEC_PTY 0x100
/* ... and whether it is the sandbox's entrypoint (sbx_exec_config.entrypoint). */
#define SBX__EXEC_MAIN 0x200

/* The spec of an exec, in a memfd: this header, then argc + envc
 * NUL-terminated strings and, with has_workdir, one more. */
#define SBX__EXEC_MAGIC    0x73627865u /* "sbxe" */
#define SBX__EXEC_MAX_SPEC (16u << 20)
struct sbx__exec_wire {
    uint32_t magic;
    uint32_t uid, gid;
    uint16_t rows, cols;
    uint32_t argc, envc;
    uint32_t has_workdir;
};
struct sbx__msg {
    int type;
    int code;
    char message[sizeof(((sbx_error *)0)->message)];
};
int sbx__msg_send(int fd, int type, const sbx_error *err);
/* A message of `type` with .code = value, carrying fd (SCM_RIGHTS). */
int sbx__send_fd(int sock, int type, int value, int fd);
/* Receives one message and the fd it carries (or -1 in *ret_fd); 1, or 0 at
 * EOF, or -errno. */
int sbx__recv_msg(int sock, struct sbx__msg *m, int *ret_fd);

struct sbx__rootfs {
    const char *run_dir; /* the sandbox's run dir: holds rootfs/ and lower/<i>/ */
    const char *upper, *work;
    const char *const *layers;
    size_t n_layers;
    const int *layer_fds; /* idmapped detached trees, or NULL without userns */
    bool userns;
    int sysfs_fd;                   /* a detached sysfs to move to /sys, or -1: mount one */
    const char *resolv_conf;        /* a host file bound read-only at /etc/resolv.conf, or NULL */
    const struct sbx_mount *mounts; /* placed with mount_fds (sbx__mount_source()) */
    const int *mount_fds;
    size_t n_mounts;
    /* The capped writable layer's file system (a detached tree), moved to
     * disk_dir before the overlay is mounted; -1: none. */
    int disk_fd;
    const char *disk_dir;
    const char *workdir; /* made when missing */
};

/* ---- binds into the sandbox (mounts.c) ---- */

/* Checks the mounts' paths (see struct sbx_mount). */
int sbx__mounts_validate(const struct sbx_mount *m, size_t n, sbx_error *err);
/* A detached bind of m's source, opened beneath its root, with its
 * attributes (idmapped to userns_fd when >= 0): an fd, or -errno. */
int sbx__mount_source(const struct sbx_mount *m, int userns_fd, sbx_error *err);
/* With the root as cwd: moves tree onto dst, made when missing (a
 * directory, or a file for a file's tree), never through a symlink. */
int sbx__mount_place(const char *dst, int tree, sbx_error *err);
/* With the new root as cwd: makes the working directory when missing
 * (as Docker's WORKDIR is), never through a symlink; failures are chdir's
 * to report. */
void sbx__make_workdir(const char *path);
/* In the child, with the new root as cwd: places each tree at its mount's
 * destination, parents first. */
int sbx__mounts_place(const struct sbx_mount *m, const int *fds, size_t n, sbx_error *err);

/* In the sandbox's new mount namespace: builds the root filesystem (overlay,
 * /proc, /sys, /dev, /tmp, masked paths) and pivots into it. */
int sbx__rootfs_setup(const struct sbx__rootfs *p, sbx_error *err);

/* Becomes the sandbox's pid 1: starts spec->argv (or idles), reports
 * READY or ERROR on sync_fd, then reaps, forwards signals and runs the
 * processes the caller asks for on sync_fd (EXEC) until the entrypoint
 * exits; exits with its status (128+N for signal N). */
__attribute__((noreturn)) void sbx__init_run(const struct sbx__proc_spec *spec, int sync_fd);

/* In a process already inside the sandbox's namespaces and cgroup, with its
 * stdio in place: applies rlimits, workdir, user, capabilities, no_new_privs
 * and seccomp, then execs spec->argv.  On failure sends ERROR on err_fd and
 * exits 127. */
__attribute__((noreturn)) void sbx__exec_workload(const struct sbx__proc_spec *spec, int err_fd);

/* Closes every fd >= 3 except those in keep[]. */
void sbx__close_fds_except(const int *keep, size_t n_keep);

/* ---- pre-made network namespaces (netpool.c) ---- */

/* Brings lo of the caller's network namespace up (sandbox.c). */
int sbx__loopback_up(sbx_error *err);

/* Makes a network namespace ready for a sandbox (loopback up, sysctls,
 * sysfs mount) and leaves the calling thread in it. */
int sbx__netns_make(struct sbx_netns *ret, const struct sbx_network *net, int host_netns,
                    sbx_error *err);

/* ---- the sandboxes' network (network.c) ---- */

/* In a new network namespace (the calling thread's): leases an address,
 * makes eth0 with it and a default route via the bridge, its veth peer on
 * the bridge in host_netns (isolated).  The thread ends where it started. */
int sbx__veth_attach(const struct sbx_network *net, int host_netns, uint32_t *ret_addr,
                     sbx_error *err);
void sbx__addr_format(uint32_t addr, char out[16]);
/* "A.B.C.D/P" (P 0..32) into ret->subnet (host bits cleared), ret->prefix. */
int sbx__cidr_parse(const char *cidr, struct sbx_network *ret);
/* Writes the sandbox's id into its address's lease (RUN/leases/ADDR). */
int sbx__lease_claim(const char *run_dir, uint32_t addr, const char *id);
void sbx__lease_release(const char *run_dir, uint32_t addr);
/* Removes the leases a sandbox of this id holds (crash recovery). */
void sbx__leases_release_owned(const char *run_dir, const char *id);

#endif
