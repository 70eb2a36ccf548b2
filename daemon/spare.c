/* spare.c — sandbox record directories made ahead of time, and removed
 * behind the loop's back.
 *
 * Making a file or a directory allocates an inode, and on a busy or
 * uncached disk that is the slowest thing a create does: on the build
 * machine's ext4, 30-40 us when its metadata is cached and 250 us when it
 * is not, against ~10 us for a rename or an append.  A create used to make
 * about ten of them before its sandbox could start (records/ID, procs,
 * spec.json and record.json through temporary files, events.ndjson, the
 * monitor's log and monitor.json), and the runtime three more (the
 * writable layer's directories).  So the daemon keeps a few record
 * directories ready in STATE/records/.spare/, each with every file a new
 * sandbox's records start with already made and empty.  A create writes
 * spec.json and record.json into one and renames it to records/ID: the
 * record appears whole and at once (a crash before the rename leaves only
 * a spare, and spares are remade at start), and nothing on the way
 * allocates an inode.  The monitor finds its log, procs and the temporary
 * file of monitor.json there and only writes and renames, and passes the
 * spec's "state_spare" to the runtime, which takes the state directory made
 * under the same name (sbx_state_spare_make()).  libuv's thread pool makes
 * the next spare meanwhile.
 *
 * Deleting goes the other way: records/ID is renamed into
 * STATE/records/.trash/ (one cheap step on the loop) and removed there on
 * the thread pool, so that a DELETE never waits for a dozen unlinks.  A
 * deleted sandbox's records are recycled into a spare instead when its
 * monitor is gone (it holds a lock on the directory for its life): the
 * files are emptied, the processes' directories but one removed, and the
 * inodes serve the next sandbox.  On an ext4 without a journal (this
 * project's build machines) every inode deleted in the last minutes makes
 * each allocation slower (ext4 skips them one by one): making and deleting
 * a dozen per sandbox made a create's files cost milliseconds under churn.
 *
 * Neither name is a sandbox id, so the registry never reads them. */
#include "sandboxd.h"
#include "sbx.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SPARES_WANTED    4
#define SPARES_RETRY_S   10 /* after a spare could not be made */
#define SPARES_READY_MAX 32 /* ready spares kept, recycled ones included */
#define SBX_N(a)         (sizeof(a) / sizeof((a)[0]))

/* What a new sandbox's records start with (the monitor's writes included:
 * it opens its log with O_CREAT and monitor.json's temporary file with
 * O_CREAT | O_TRUNC, makes procs if it is missing, and takes procs/.next,
 * complete, for its first process: monitor.c, "made ahead"). */
static const char *const skeleton_dirs[] = {"procs", "procs/.next"};
static const char *const skeleton_files[] = {
    "spec.json",         "record.json",    "events.ndjson", "procs.ndjson", "monitor.log",
    ".monitor.json.tmp", ".exit.json.tmp", "claim.json", /* written only if the sandbox is pooled
                                                            and then claimed (pool.c) */
};
static const char *const next_files[] = {SBXD_NEXT_FILES};

struct spares {
    unsigned long long next_name; /* names are s1, s2, ... (t1, t2, ... for trash) */
    char ready[SPARES_READY_MAX][32];
    unsigned n_ready;
    unsigned in_flight; /* spares being made on the pool */
    double retry_at;    /* making one failed: not again before this (sbxd_now()) */
    bool sweeping;      /* a sweep of the trash is queued or runs */
    bool sweep_again;   /* something was trashed since it started */
};

static struct spares spares;

struct job {
    uv_work_t work;
    char path[PATH_MAX];      /* the spare to make, or the trash to empty */
    char name[32];            /* the spare's name */
    char state_dir[PATH_MAX]; /* for the runtime's spare of the same name */
    bool make;                /* make a spare (else empty the trash) */
    int result;
    /* A sweep: names for the spares it may recycle, and how many it did. */
    char spare_dir[PATH_MAX];
    char names[SPARES_READY_MAX][32];
    unsigned n_names, n_recycled;
};

static void spare_dir(struct sbxd *d, const char *sub, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/records/%s%s%s", d->cfg.state_dir, sub, name ? "/" : "", name ? name : "");
}

/* Makes the skeleton's directories and files in dfd; excl (O_EXCL): none
 * of them may be there yet, else those there are kept.  0 or -errno. */
static int skeleton_fill(int dfd, int excl)
{
    for (size_t i = 0; i < SBX_N(skeleton_dirs); i++)
        if (mkdirat(dfd, skeleton_dirs[i], 0700) < 0 && (excl || errno != EEXIST))
            return -errno;
    for (size_t i = 0; i < SBX_N(skeleton_files) + SBX_N(next_files); i++) {
        char name[64];
        int fd;

        if (i < SBX_N(skeleton_files))
            snprintf(name, sizeof(name), "%s", skeleton_files[i]);
        else
            snprintf(name, sizeof(name), "procs/.next/%s", next_files[i - SBX_N(skeleton_files)]);
        fd = openat(dfd, name, O_WRONLY | O_CREAT | excl | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            return -errno;
        close(fd);
    }
    return 0;
}

/* On the pool: DIR.tmp with the skeleton, renamed to DIR once complete. */
static int make_skeleton(const char *path)
{
    char tmp[PATH_MAX + 8];
    int dfd, r = 0;

    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    (void)sbxd_rm_rf(tmp);
    if (mkdir(tmp, 0700) < 0)
        return -errno;
    dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        r = -errno;
    if (r == 0)
        r = skeleton_fill(dfd, O_EXCL);
    if (dfd >= 0)
        close(dfd);
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0)
        (void)sbxd_rm_rf(tmp);
    return r;
}

/* On the pool: removes everything in the trash directory, one entry at a
 * time, in the background (one sweep runs at a time).  A monitor still finishing
 * may write its last records into a directory meanwhile (it holds it
 * open): such an entry is looked at again a little later. */
/* Background work runs at the lowest CPU priority: it must never take a
 * core from a create (which keeps both of a small machine's busy).
 * Returns the nice value to restore. */
static int background_begin(void)
{
    pid_t tid = (pid_t)syscall(SYS_gettid);
    int was;

    errno = 0;
    was = getpriority(PRIO_PROCESS, (id_t)tid);
    if (errno)
        was = 0;
    (void)setpriority(PRIO_PROCESS, (id_t)tid, 19);
    return was;
}

static void background_end(int was)
{
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), was);
}

/* In the directory dfd: the entries named in keep truncated to nothing,
 * every other one removed (but skip, left as it is).  0, or -1. */
static int keep_only(int dfd, const char *const *keep, size_t n_keep, const char *skip)
{
    DIR *dh = fdopendir(fcntl(dfd, F_DUPFD_CLOEXEC, 3));
    struct dirent *de;
    int r = 0;

    if (!dh)
        return -1;
    while (r == 0 && (de = readdir(dh))) {
        bool kept = false;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            (skip && !strcmp(de->d_name, skip)))
            continue;
        for (size_t i = 0; i < n_keep; i++)
            kept |= !strcmp(de->d_name, keep[i]);
        if (kept) {
            int fd = openat(dfd, de->d_name, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0)
                r = -1;
            else
                close(fd);
        } else if (sbx_rm_rf_at(dfd, de->d_name, NULL) < 0) {
            r = -1;
        }
    }
    closedir(dh);
    return r;
}

/* Empties a deleted sandbox's records into a spare's skeleton, in place:
 * every file it starts with truncated (monitor.json and exit.json become
 * their temporary files again), one process directory kept as procs/.next
 * with its first segments emptied, everything else removed.  Only when no
 * monitor holds the directory's lock (a monitor takes it before it writes
 * anything, and checks then that the directory is still its own) and it is
 * of this version's layout (procs.ndjson).  0; -EWOULDBLOCK while a monitor
 * holds it; -1: remove it instead. */
static int recycle_records(int dfd)
{
    static const struct {
        const char *from, *to;
    } renames[] = {{"monitor.json", ".monitor.json.tmp"}, {"exit.json", ".exit.json.tmp"}};
    DIR *dh;
    struct dirent *de;
    int procs = -1, r = 0;
    bool have_next = false;

    if (flock(dfd, LOCK_EX | LOCK_NB) < 0)
        return errno == EWOULDBLOCK ? -EWOULDBLOCK : -1;
    if (faccessat(dfd, "procs.ndjson", F_OK, 0) < 0)
        return -1;
    for (size_t i = 0; i < SBX_N(renames); i++)
        if (faccessat(dfd, renames[i].to, F_OK, AT_SYMLINK_NOFOLLOW) < 0 &&
            renameat(dfd, renames[i].from, dfd, renames[i].to) < 0 && errno != ENOENT)
            return -1;
    /* The top level: skeleton files emptied, the rest (tunnels.json, what a
     * later version adds) removed. */
    r = keep_only(dfd, skeleton_files, SBX_N(skeleton_files), "procs");
    /* procs/: .next kept (or one process's directory made it), with its
     * first segments emptied and nothing else. */
    procs = r == 0 ? openat(dfd, "procs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    dh = procs >= 0 ? fdopendir(fcntl(procs, F_DUPFD_CLOEXEC, 3)) : NULL;
    if (!dh)
        r = -1;
    have_next = dh && faccessat(procs, ".next", F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    while (r == 0 && (de = readdir(dh))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, ".next"))
            continue;
        if (!have_next && de->d_type == DT_DIR &&
            renameat(procs, de->d_name, procs, ".next") == 0) {
            have_next = true;
            continue;
        }
        if (sbx_rm_rf_at(procs, de->d_name, NULL) < 0)
            r = -1;
    }
    if (dh)
        closedir(dh);
    if (r == 0 && have_next) {
        int next = openat(procs, ".next", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        r = next >= 0 ? keep_only(next, next_files, SBX_N(next_files), NULL) : -1;
        if (next >= 0)
            close(next);
    }
    if (procs >= 0)
        close(procs);
    if (r < 0)
        return -1;
    /* Whatever the skeleton lacks (a monitor that never started, a process
     * directory that was missing): made now, as a spare of our own would be. */
    return skeleton_fill(dfd, 0) < 0 ? -1 : 0;
}

static int sweep(struct job *j)
{
    const char *trash = j->path;
    int nice_was = background_begin(), r = 0;

    for (int pass = 0; pass < 3; pass++) {
        DIR *dh = opendir(trash);
        struct dirent *de;
        bool left = false;

        if (!dh) {
            r = -errno;
            break;
        }
        r = 0;
        while ((de = readdir(dh))) {
            char path[PATH_MAX];
            int e;

            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            snprintf(path, sizeof(path), "%s/%s", trash, de->d_name);
            /* A sandbox's records ("r…"): into a spare while spares are
             * wanted. */
            if (de->d_name[0] == 'r' && j->n_recycled < j->n_names) {
                const char *name = j->names[j->n_recycled];
                char dest[PATH_MAX];
                sbx_error err;
                int dfd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                int rr = dfd >= 0 ? recycle_records(dfd) : -1;
                bool ok = rr == 0 && sbx_state_spare_make(j->state_dir, name, &err) == 0;
                if (rr == -EWOULDBLOCK && pass < 2) {
                    /* Its monitor is still tearing the sandbox down: later. */
                    close(dfd);
                    left = true;
                    continue;
                }
                snprintf(dest, sizeof(dest), "%s/%s", j->spare_dir, name);
                /* The lock goes with the close, after the rename: a monitor
                 * that had the old path open finds it gone. */
                if (ok && rename(path, dest) == 0) {
                    j->n_recycled++;
                    close(dfd);
                    continue;
                }
                if (dfd >= 0)
                    close(dfd);
            }
            e = sbxd_rm_rf(path);
            if (e == -ENOTEMPTY)
                left = true;
            else if (e < 0 && r == 0)
                r = e;
        }
        closedir(dh);
        if (!left)
            break;
        r = -ENOTEMPTY;
        usleep(50000);
    }
    background_end(nice_was);
    return r;
}

static void do_job(uv_work_t *w)
{
    struct job *j = w->data;

    if (j->make) {
        sbx_error err;
        int nice_was = background_begin();
        /* The runtime's part (the writable layer's directories) first: a
         * spare of ours is ready only with it. */
        j->result = sbx_state_spare_make(j->state_dir, j->name, &err) < 0 ? -err.code : 0;
        if (j->result == 0)
            j->result = make_skeleton(j->path);
        background_end(nice_was);
        return;
    }
    j->result = sweep(j);
}

static void fill(struct sbxd *d);
static void sweep_start(struct sbxd *d);

static void job_done(uv_work_t *w, int status)
{
    struct job *j = w->data;
    struct sbxd *d = sbxd_global;

    if (j->make) {
        spares.in_flight--;
        if (status == 0 && j->result == 0 && spares.n_ready < SPARES_WANTED) {
            snprintf(spares.ready[spares.n_ready++], sizeof(spares.ready[0]), "%s", j->name);
        } else if (status == 0 && j->result < 0) {
            sbxd_log(NULL,
                     "cannot make a spare record directory %s: %s (creates make their own; "
                     "trying again in %d s)",
                     j->path, strerror(-j->result), SPARES_RETRY_S);
            spares.retry_at = sbxd_now() + SPARES_RETRY_S;
        }
        if (d && status == 0)
            fill(d);
    } else {
        if (status == 0 && j->result < 0)
            sbxd_log(NULL, "empty %s: %s", j->path, strerror(-j->result));
        for (unsigned i = 0; status == 0 && i < j->n_recycled; i++)
            if (spares.n_ready < SPARES_READY_MAX)
                snprintf(spares.ready[spares.n_ready++], sizeof(spares.ready[0]), "%s",
                         j->names[i]);
        spares.sweeping = false;
        if (d && status == 0 && spares.sweep_again)
            sweep_start(d);
    }
    free(j);
}

static int queue(struct sbxd *d, struct job *j)
{
    j->work.data = j;
    if (uv_queue_work(d->loop, &j->work, do_job, job_done) < 0) {
        free(j);
        return -EAGAIN;
    }
    return 0;
}

/* Keeps SPARES_WANTED ready or being made. */
static void fill(struct sbxd *d)
{
    if (spares.retry_at && sbxd_now() < spares.retry_at)
        return;
    spares.retry_at = 0;
    while (spares.n_ready + spares.in_flight < SPARES_WANTED) {
        struct job *j = calloc(1, sizeof(*j));
        if (!j)
            return;
        j->make = true;
        snprintf(j->name, sizeof(j->name), "s%llu", ++spares.next_name);
        snprintf(j->state_dir, sizeof(j->state_dir), "%s", d->cfg.state_dir);
        spare_dir(d, ".spare", j->name, j->path, sizeof(j->path));
        if (queue(d, j) < 0)
            return;
        spares.in_flight++;
    }
}

void sbxd_spares_start(struct sbxd *d)
{
    char path[PATH_MAX];

    /* Spares and trash from an earlier run: made, filled or half-removed,
     * none of it is anybody's record. */
    spare_dir(d, ".spare", NULL, path, sizeof(path));
    (void)sbxd_rm_rf(path);
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        sbxd_log(NULL, "cannot make %s: %s (creates make their own records)", path,
                 strerror(errno));
        spares.retry_at = sbxd_now() + SPARES_RETRY_S;
    }
    spare_dir(d, ".trash", NULL, path, sizeof(path));
    (void)sbxd_rm_rf(path);
    (void)mkdir(path, 0700);
    sbx_state_spares_clear(d->cfg.state_dir);
    fill(d);
}

static int write_text(int dfd, const char *name, json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    int fd, r;

    if (!text)
        return -ENOMEM;
    /* The file is there, empty: no O_CREAT, so nothing allocates an inode. */
    fd = openat(dfd, name, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        r = -errno;
    } else {
        r = sbxd_write_all(fd, text, strlen(text));
        close(fd);
    }
    free(text);
    return r;
}

int sbxd_spare_take(struct sbxd *d, const char *id, json_t *spec, json_t *record)
{
    char path[PATH_MAX], dest[PATH_MAX];
    const char *name;
    int dfd, r;

    if (spares.n_ready == 0) {
        fill(d);
        return -EAGAIN;
    }
    name = spares.ready[--spares.n_ready];
    spare_dir(d, ".spare", name, path, sizeof(path));
    /* The monitor hands the runtime its state dir of the same name. */
    json_object_set_new(spec, "state_spare", json_string(name));
    fill(d);
    dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0)
        return -EAGAIN;
    r = write_text(dfd, "spec.json", spec);
    if (r == 0)
        r = write_text(dfd, "record.json", record);
    close(dfd);
    spare_dir(d, id, NULL, dest, sizeof(dest));
    if (r == 0 && rename(path, dest) < 0)
        r = -errno;
    if (r < 0) {
        /* A half-written spare is nobody's: throw it away. */
        sbxd_trash(d, path);
        return r == -ENOMEM ? r : -EAGAIN;
    }
    return 0;
}

static void sweep_start(struct sbxd *d)
{
    struct job *j;

    spares.sweep_again = false;
    j = calloc(1, sizeof(*j));
    if (!j)
        return;
    spare_dir(d, ".trash", NULL, j->path, sizeof(j->path));
    spare_dir(d, ".spare", NULL, j->spare_dir, sizeof(j->spare_dir));
    snprintf(j->state_dir, sizeof(j->state_dir), "%s", d->cfg.state_dir);
    /* Recycled records become ready spares, up to SPARES_READY_MAX. */
    while (spares.n_ready + spares.in_flight + j->n_names < SPARES_READY_MAX &&
           j->n_names < SPARES_READY_MAX && !spares.retry_at)
        snprintf(j->names[j->n_names++], sizeof(j->names[0]), "s%llu", ++spares.next_name);
    if (queue(d, j) == 0)
        spares.sweeping = true;
}

/* Moves path into the trash (one rename) for the sweep to remove; removes
 * it here when it cannot. */
static void trash_as(struct sbxd *d, const char *path, char prefix)
{
    char dest[PATH_MAX], name[32];

    snprintf(name, sizeof(name), "%c%llu", prefix, ++spares.next_name);
    spare_dir(d, ".trash", name, dest, sizeof(dest));
    if (rename(path, dest) < 0) {
        (void)sbxd_rm_rf(path);
        return;
    }
    if (spares.sweeping)
        spares.sweep_again = true;
    else
        sweep_start(d);
}

void sbxd_trash(struct sbxd *d, const char *path)
{
    trash_as(d, path, 't');
}

int sbxd_records_create(struct sbxd *d, const char *id, json_t *spec, json_t *record)
{
    char dir[PATH_MAX], path[PATH_MAX];
    int r = sbxd_spare_take(d, id, spec, record);

    if (r != -EAGAIN)
        return r;
    spare_dir(d, id, NULL, dir, sizeof(dir));
    r = sbxd_mkdir_p(dir, 0700);
    spare_dir(d, id, "spec.json", path, sizeof(path));
    if (r >= 0)
        r = sbxd_write_json(path, spec, false);
    spare_dir(d, id, "record.json", path, sizeof(path));
    if (r >= 0)
        r = sbxd_write_json(path, record, false);
    return r;
}

int sbxd_records_claim(struct sbxd *d, const char *id, json_t *claim)
{
    char path[PATH_MAX];
    char *text = json_dumps(claim, JSON_COMPACT);
    struct stat st;
    int fd, r;

    if (!text)
        return -ENOMEM;
    spare_dir(d, id, "claim.json", path, sizeof(path));
    /* Made empty with the spare: written without O_TRUNC, which (like a
     * rename over a file) makes ext4 flush the new data at close. */
    fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0 && ftruncate(fd, 0) < 0) {
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        r = -errno;
    } else {
        r = sbxd_write_all(fd, text, strlen(text));
        close(fd);
    }
    free(text);
    return r;
}

void sbxd_records_remove(struct sbxd *d, const char *id)
{
    char path[PATH_MAX];

    spare_dir(d, id, NULL, path, sizeof(path));
    trash_as(d, path, 'r'); /* a sandbox's records: recyclable */
}
