/* sandboxd.h — what the daemon's files share.
 *
 * The daemon is one libuv loop.  It keeps the sandboxes in memory, their
 * records on disk (STATE/records/ID/), and a connection to each running
 * sandbox's monitor (daemon/monitor-proto.h), which owns the sandbox itself.
 * Everything the daemon knows can be rebuilt from the records directory and
 * the monitors after a restart. */
#ifndef SBXD_H
#define SBXD_H

#include "http.h"
#include "monitor-proto.h"
#include "sbx.h"

#include <jansson.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define SBXD_VERSION "0.1.0"

/* Most sandboxes the config may ask to keep made ahead per image. */
#define SBXD_POOL_MAX 64

struct sbxd_config {
    const char *socket_path;
    const char *state_dir;    /* records, writable layers */
    const char *image_store;  /* images/ and layers/ (default: state_dir) */
    const char *run_dir;      /* monitor sockets, runtime mount points */
    const char *listen;       /* TCP HOST:PORT or NULL */
    char **tokens;            /* for TCP */
    const char *monitor_path; /* the sandboxd-monitor binary */
    bool no_zygote;           /* start every monitor as a new program */
    unsigned netns_pool;      /* network namespaces the zygote keeps made ahead */
    /* limits */
    size_t max_body;
    unsigned max_connections;
    unsigned max_sandboxes;
    unsigned max_execs;    /* per sandbox */
    uint64_t output_limit; /* bytes kept per stream */
    uint64_t default_memory_bytes;
    int64_t default_pids_max;
    const char *cgroup_parent;
    json_t *pool; /* {"image": N}: sandboxes made ahead per image (pool.c) */
    json_t *json; /* the config file's object: the strings and objects here point into it */
    /* The sandboxes' network (runtime/network.c); off: loopback only */
    bool network;
    const char *bridge, *subnet;
    json_t *dns;             /* ["A.B.C.D", ...] or NULL: the host's resolvers */
    const char *tunnel_bind; /* the host address tunnels listen on */
    /* tls tunnels: the certificate and key files ("tls" in the config);
     * NULL: the one made at the first start (tls.c) */
    const char *tls_cert, *tls_key;
    uint64_t max_upload; /* an image import's body (spooled to a file) */
    /* host paths sandboxes may bind: [{"path": ABS, "writable": BOOL}] */
    json_t *host_mounts;
};

struct sbxd_proc;
struct sbxd_sandbox;
struct sbx_image;

/* A reader's place in a stream: the segment it has open (fd -1: none). */
struct sbxd_output_cursor {
    int fd;
    uint64_t start;
};

/* A client waiting for something: a long poll or a following stream. */
struct sbxd_waiter {
    struct sbxd_waiter *next, *prev;
    sbxd_req *req;
    sbxd_stream *stream;
    struct sbxd_sandbox *sb;
    struct sbxd_proc *proc;
    int kind;         /* SBXD_WAIT_* */
    int stream_index; /* 0 stdout, 1 stderr */
    uint64_t offset;  /* next byte to send (streams) */
    bool follow;
    bool dry; /* the last pull found nothing beyond offset (output) */
    struct sbxd_output_cursor cursor;
    uv_timer_t timer; /* long-poll timeout */
    bool timer_active;
};

enum {
    SBXD_WAIT_SANDBOX = 1,
    SBXD_WAIT_PROC,
    SBXD_WAIT_STREAM,
    SBXD_WAIT_EVENTS,
    SBXD_WAIT_READY,
    SBXD_WAIT_TUNNELS
};

/* A map from ids to objects (open addressing, grown as it fills; nothing
 * allocated while empty).  The key is the object's own id string: it must
 * stay as it is while the object is in the map. */
struct sbxd_index {
    size_t cap, used; /* slots, slots not empty (tombstones count) */
    struct sbxd_index_slot *slots;
};

struct sbxd_proc {
    struct sbxd_proc *next;
    char id[32]; /* "pr-..." or "entrypoint" */
    json_t *argv;
    double started_at;
    bool has_returncode;
    int returncode;
    uint64_t size[2]; /* bytes written so far per stream, as the monitor told us */
    bool eof[2];
};

struct sbxd_sandbox {
    struct sbxd_sandbox *next;
    char id[32];
    char *app, *name, *image;
    json_t *tags;           /* object */
    json_t *request;        /* the create request, as recorded */
    json_t *env;            /* spec.json's env (the image's and the request's), read once */
    unsigned uid, gid;      /* the image's user: execs run as it (spec.json's, read with env) */
    char *workdir;          /* the working directory: execs' default (spec.json's, read with env) */
    json_t *mounted_images; /* images mounted into it (mount-image), or NULL */
    char state[16];         /* created scheduled started ready finished */
    double created_at, started_at, ready_at, finished_at;
    bool has_returncode;
    int returncode;
    char finish_reason[24];
    unsigned n_procs;
    struct sbxd_proc *procs, *procs_tail; /* oldest first */
    struct sbxd_index proc_index;         /* by id */
    /* the monitor */
    struct sbxd_monitor *mon;
    int init_pid; /* from the monitor's status; 0 when unknown */
    /* clients waiting */
    struct sbxd_waiter waiters; /* list head */
    bool deleted;
    /* made ahead (pool.c): in d->pool, nobody's until claimed */
    bool pooled, pool_ready, pool_doomed;
    json_t *tunnels;     /* {"PORT":{"host","port","url","tls"}} while they are open, or NULL */
    json_t *pool_layers; /* the image's layers it was made of */
};

struct sbxd {
    uv_loop_t *loop;
    struct sbxd_config cfg;
    sbxd_http *http;
    struct sbxd_sandbox *sandboxes;
    struct sbxd_index sandbox_index; /* d->sandboxes by id */
    struct sbxd_sandbox *pool;       /* pooled sandboxes (pool.c), not in sandboxes */
    unsigned n_running;
    json_t *apps; /* {"name": {"app_id":..., "name":...}} */
    struct sbxd_zygote *zygote;
    struct sbx_network net; /* when cfg.network */
    char resolv_conf[4096]; /* RUN/resolv.conf: the sandboxes' DNS servers */
    /* The certificate tls tunnels are served with (tls.c) */
    char tls_cert[PATH_MAX], tls_key[PATH_MAX];
    char *tls_cert_pem;   /* its text, as /v1/info gives it */
    char tls_sha256[100]; /* its SHA-256 fingerprint, AA:BB:.. */
    double started_at;
    unsigned long long created_total, execs_total;
};

extern struct sbxd *sbxd_global;

/* ---- util.c ---- */
void sbxd_log(const char *sandbox_id, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double sbxd_now(void);
/* "sb-", "pr-", ... followed by 22 random base62 characters. */
void sbxd_new_id(const char *prefix, char *buf, size_t size);
bool sbxd_valid_id(const char *id, const char *prefix);
bool sbxd_valid_name(const char *name); /* [A-Za-z0-9._-]{1,63} */
int sbxd_mkdir_p(const char *path, mode_t mode);
/* Writes json to path atomically (tmp + rename).  durable: fsync the file
 * and the directory too, for what must outlive a host crash (apps); a
 * sandbox's records need not, the sandbox does not outlive one either. */
int sbxd_write_json(const char *path, json_t *json, bool durable);
/* The same for bytes, made with `mode`. */
int sbxd_write_file(const char *path, const void *data, size_t len, mode_t mode, bool durable);
/* Writes all of data (EINTR and short writes retried): 0 or -errno. */
int sbxd_write_all(int fd, const void *data, size_t len);
json_t *sbxd_read_json(const char *path);
int sbxd_rm_rf(const char *path);

/* struct sbxd_index: above */
int sbxd_index_put(struct sbxd_index *ix, const char *key, void *val); /* 0 or -ENOMEM */
void *sbxd_index_get(const struct sbxd_index *ix, const char *key);
void sbxd_index_del(struct sbxd_index *ix, const char *key);
void sbxd_index_free(struct sbxd_index *ix);

/* ---- tls.c: the certificate of tls tunnels ---- */
/* Checks the configured certificate and key, or makes STATE/tls/cert.pem
 * and key.pem (self-signed) when there is none or the one made earlier no
 * longer fits.  Fills d->tls_*: 0 or -errno (logged). */
int sbxd_tls_init(struct sbxd *d);
void sbxd_tls_free(struct sbxd *d);

/* ---- registry.c: sandboxes, apps, records ---- */
int sbxd_registry_load(struct sbxd *d);
struct sbxd_sandbox *sbxd_sandbox_find(struct sbxd *d, const char *id);
int sbxd_sandbox_link(struct sbxd *d, struct sbxd_sandbox *sb); /* into d->sandboxes */
struct sbxd_sandbox *sbxd_sandbox_by_name(struct sbxd *d, const char *app, const char *name);
struct sbxd_proc *sbxd_proc_find(struct sbxd_sandbox *sb, const char *id);
struct sbxd_proc *sbxd_proc_add(struct sbxd_sandbox *sb, const char *id, json_t *argv);
json_t *sbxd_sandbox_record(struct sbxd *d, struct sbxd_sandbox *sb);
int sbxd_sandbox_save(struct sbxd *d, struct sbxd_sandbox *sb);
/* What record.json holds. */
json_t *sbxd_sandbox_record_file(struct sbxd_sandbox *sb);
char *sbxd_records_path(struct sbxd *d, const char *id, const char *rest);
void sbxd_sandbox_set_state(struct sbxd *d, struct sbxd_sandbox *sb, const char *state);
void sbxd_sandbox_finished(struct sbxd *d, struct sbxd_sandbox *sb, int returncode,
                           const char *reason);
void sbxd_sandbox_forget(struct sbxd *d, struct sbxd_sandbox *sb);
/* Catches up with the monitor's files (events, processes, exit); true once
 * the sandbox has finished. */
bool sbxd_sandbox_sync(struct sbxd *d, struct sbxd_sandbox *sb);
int sbxd_app_ensure(struct sbxd *d, const char *name, json_t **ret);
/* Appends an event to the sandbox's events.ndjson and wakes event followers. */
void sbxd_sandbox_event(struct sbxd *d, struct sbxd_sandbox *sb, const char *event);

/* ---- spare.c: record directories made ahead, removed behind ---- */
/* Clears what an earlier run left in STATE/records/.spare and .trash, and
 * starts making spares on the thread pool. */
void sbxd_spares_start(struct sbxd *d);
/* Makes records/ID from a spare with spec.json and record.json written:
 * 0, or -EAGAIN when none is ready (the caller makes the records itself). */
int sbxd_spare_take(struct sbxd *d, const char *id, json_t *spec, json_t *record);
/* Makes records/ID with spec.json and record.json: from a spare when one
 * is ready (no file made on the way), else made here. */
int sbxd_records_create(struct sbxd *d, const char *id, json_t *spec, json_t *record);
/* Removes records/ID: renamed away at once, deleted on the thread pool. */
void sbxd_records_remove(struct sbxd *d, const char *id);
/* The same for any path under the state dir (a volume). */
void sbxd_trash(struct sbxd *d, const char *path);
/* Writes records/ID/claim.json ({"record","spec"} of a claimed pooled
 * sandbox, pool.c), which the spare made empty: no inode is allocated and
 * no file replaced (ext4 flushes a file renamed over another at once). */
int sbxd_records_claim(struct sbxd *d, const char *id, json_t *claim);

/* ---- pool.c: sandboxes made ahead of time ---- */
/* Shuts down pooled sandboxes an earlier run left (loaded into d->pool)
 * and starts filling the pool. */
void sbxd_pool_start(struct sbxd *d);
/* Shuts every pooled sandbox down (waits up to 2 s for their monitors to
 * take the order). */
void sbxd_pool_stop(struct sbxd *d);
/* Whether a pooled sandbox can serve this (validated) create request. */
bool sbxd_pool_fits(struct sbxd *d, json_t *body);
/* A ready pooled sandbox of this image, taken out of the pool, or NULL. */
struct sbxd_sandbox *sbxd_pool_take(struct sbxd *d, const char *image, const struct sbx_image *img);
/* A pooled sandbox ended or changed: look at the pool soon. */
void sbxd_pool_kick(struct sbxd *d);
void sbxd_pool_stats(struct sbxd *d, unsigned *ready, unsigned *starting,
                     unsigned long long *claimed);

/* ---- monitor-client.c ---- */
struct sbxd_monitor;
typedef void (*sbxd_monitor_cb)(struct sbxd *d, struct sbxd_sandbox *sb, json_t *reply, void *data);
/* Starts the monitor of a new sandbox (spec.json written); asynchronous. */
int sbxd_monitor_start(struct sbxd *d, struct sbxd_sandbox *sb);
/* Connects to the monitor of a sandbox that runs (after a daemon restart). */
int sbxd_monitor_attach(struct sbxd *d, struct sbxd_sandbox *sb);
/* Sends a request; cb gets the reply (or a synthesized error if the monitor
 * goes away).  Takes ownership of msg. */
int sbxd_monitor_request(struct sbxd *d, struct sbxd_sandbox *sb, json_t *msg, sbxd_monitor_cb cb,
                         void *data);
void sbxd_monitor_close(struct sbxd_sandbox *sb);

/* ---- zygote.c: the pre-started process that forks monitors ---- */
struct sbxd_zygote;
/* Spawns the zygote (and again whenever it exits, until stopped). */
int sbxd_zygote_start(struct sbxd *d);
/* Closes its control socket (the zygote then exits; its monitors run on). */
void sbxd_zygote_stop(struct sbxd *d);
/* Asks the zygote to fork sb's monitor with client_fd (not taken: the
 * caller closes its copy) as its connection.  0 once asked; -errno when
 * there is no zygote to ask now, and the caller spawns the monitor itself. */
int sbxd_zygote_request(struct sbxd *d, struct sbxd_sandbox *sb, const char *spec, const char *log,
                        int client_fd);

/* ---- output.c: streams read from the monitor's segment files ---- */
/* Reads up to len bytes of a stream at *offset and advances it.  Returns
 * bytes read, 0 at the current end, -ERANGE when the bytes at *offset were
 * dropped meanwhile (the output limit: the reader fell behind), or -errno. */
ssize_t sbxd_output_pull(struct sbxd *d, const char *sandbox_id, const char *proc_id, int stream,
                         struct sbxd_output_cursor *c, uint64_t *offset, void *buf, size_t len);
void sbxd_output_cursor_close(struct sbxd_output_cursor *c);
/* The lowest offset still kept (what is below it was dropped). */
uint64_t sbxd_output_oldest(struct sbxd *d, const char *sandbox_id, const char *proc_id,
                            int stream);

/* The stream's size so far: the end of its last segment (0 if none). */
uint64_t sbxd_output_size(struct sbxd *d, const char *sandbox_id, const char *proc_id, int stream);

/* ---- waiters (api.c) ---- */
void sbxd_wake_sandbox(struct sbxd *d, struct sbxd_sandbox *sb);
void sbxd_wake_proc(struct sbxd *d, struct sbxd_sandbox *sb, struct sbxd_proc *p);
void sbxd_wake_streams(struct sbxd *d, struct sbxd_sandbox *sb, struct sbxd_proc *p);
/* Answers and drops every client still waiting on a sandbox being forgotten. */
void sbxd_waiters_drop(struct sbxd_sandbox *sb);

/* ---- files.c ---- */
void sbxd_files_handle(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb, const char *what);
/* /proc/INIT/root of a sandbox, checked to be still its init (cgroup);
 * *ret_uid: the host uid of its root.  An O_PATH fd or -errno. */
int sbxd_sandbox_root_open(const char *sandbox_id, int init_pid, uid_t *ret_uid);
/* The same operations beneath a host directory (a volume's). */
void sbxd_files_handle_dir(struct sbxd *d, sbxd_req *req, const char *root, const char *what);

/* ---- volumes.c: named and ephemeral volumes, allowed host paths ---- */
/* /v1/volumes... (segs[1] is "volumes"). */
void sbxd_volumes_handle(struct sbxd *d, sbxd_req *req, char segs[][128], size_t n);
/* The spec's "mounts" for a create's `volumes` and `mounts` (appended to
 * mounts, a JSON array); the volumes' names in body become canonical (an
 * id given becomes the name).  Replies 4xx and returns false on a bad
 * or unknown one. */
bool sbxd_mounts_for_create(struct sbxd *d, sbxd_req *req, json_t *body, json_t *mounts);
/* One bind of an allowed host path (read-only unless its entry is
 * writable): appended to mounts, or false with *why. */
bool sbxd_host_mount(struct sbxd *d, const char *src, const char *dst, bool readonly,
                     json_t *mounts, char *why, size_t why_len);
/* A sandbox finished: its ephemeral volumes that no running sandbox uses
 * go. */
void sbxd_volumes_release(struct sbxd *d, struct sbxd_sandbox *sb);
/* At start: the ephemeral volumes left unused by an earlier run go. */
void sbxd_volumes_start(struct sbxd *d);

/* ---- images.c: built images, snapshots ---- */
/* /v1/images... (segs[1] is "images"). */
void sbxd_images_handle(struct sbxd *d, sbxd_req *req, char segs[][128], size_t n);
/* Whether a request's body is spooled to a file (an image import). */
bool sbxd_images_spooled(const char *method, const char *path);
/* Loads an image from the daemon's store, then the system's. */
int sbxd_image_load(struct sbxd *d, const char *name, struct sbx_image **ret, sbx_error *err);
/* Why an image cannot be used yet ("is still building", "failed to
 * build"), or NULL. */
const char *sbxd_image_unready(struct sbxd *d, const char *name);
/* POST /v1/sandboxes/ID/snapshot: the sandbox's filesystem as a new image. */
void sbxd_snapshot(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb);
/* POST .../snapshot-directory {"path"}: one directory as an image. */
void sbxd_snapshot_directory(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb);
/* POST .../mount-image {"path", "image"}: an image (or an empty
 * directory) mounted into the running sandbox. */
void sbxd_mount_image(struct sbxd *d, sbxd_req *req, struct sbxd_sandbox *sb);
/* At start: builds an earlier run lost are failed, half-made layers go. */
void sbxd_images_start(struct sbxd *d);

/* ---- oci.c: OCI images in and out (skopeo, umoci) ---- */
/* SOURCE (docker://REF, oci-archive:FILE) unpacked into rootfs (made),
 * with WORK as scratch; *ret_config {"env","workdir","entrypoint","user"}.
 * Blocks; the tools' output goes to log_fd; *why on failure. */
int sbxd_oci_unpack(const char *source, bool insecure, const char *work, const char *rootfs,
                    json_t **ret_config, int log_fd, char *why, size_t why_len);
/* layers (top-most first) and config as an OCI image layout tar at
 * tar_out, with WORK as scratch.  Blocks. */
int sbxd_oci_export(const char *const *layers, json_t *config, const char *work,
                    const char *tar_out, int log_fd, char *why, size_t why_len);

/* ---- dockerfile.c ---- */
/* {"base": NAME | {"registry": REF} | absent, "steps": [..]} of a
 * Dockerfile, or NULL with *why (naming the line). */
json_t *sbxd_dockerfile_parse(const char *text, char *why, size_t why_len);

/* ---- secrets.c: named environment sets ---- */
void sbxd_secrets_handle(struct sbxd *d, sbxd_req *req, char segs[][128], size_t n);
/* Appends "K=V" of each named secret to env (a JSON array).  Replies 4xx
 * and returns false on a bad or unknown name. */
bool sbxd_secrets_env(struct sbxd *d, sbxd_req *req, json_t *names, json_t *env);

/* ---- api.c ---- */
void sbxd_api_handle(sbxd_req *req, void *data);
/* The monitor's spec.json for a (validated) create request and its image. */
json_t *sbxd_make_spec(struct sbxd *d, json_t *body, const struct sbx_image *img, const char *id);
/* The same, with the secrets' "K=V" (after the image's env, before the
 * request's) and the mounts (sbxd_mounts_for_create()); either NULL. */
json_t *sbxd_make_spec_with(struct sbxd *d, json_t *body, const struct sbx_image *img,
                            const char *id, json_t *secret_env, json_t *mounts);

#endif
