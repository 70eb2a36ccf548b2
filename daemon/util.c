/* util.c — small helpers of the daemon: logging, time, ids, atomic records. */
#include "sandboxd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* One line per event on stderr (journald adds the time); every line about a
 * sandbox names it first. */
void sbxd_log(const char *sandbox_id, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (sandbox_id)
        fprintf(stderr, "sandboxd: %s: %s\n", sandbox_id, buf);
    else
        fprintf(stderr, "sandboxd: %s\n", buf);
}

double sbxd_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char base62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

void sbxd_new_id(const char *prefix, char *buf, size_t size)
{
    unsigned char rnd[22];
    size_t n = strlen(prefix), i = 0;

    while (i < sizeof(rnd)) {
        ssize_t r = getrandom(rnd + i, sizeof(rnd) - i, 0);
        if (r > 0)
            i += (size_t)r;
    }
    snprintf(buf, size, "%s", prefix);
    for (i = 0; i < sizeof(rnd) && n + i + 1 < size; i++) {
        /* 248 = 4 * 62: rejection keeps the digits uniform. */
        while (rnd[i] >= 248)
            if (getrandom(&rnd[i], 1, 0) != 1)
                rnd[i] = 0;
        buf[n + i] = base62[rnd[i] % 62];
    }
    buf[n + i] = '\0';
}

bool sbxd_valid_id(const char *id, const char *prefix)
{
    size_t n = strlen(prefix);

    if (!id || strncmp(id, prefix, n) || strlen(id) != n + 22)
        return false;
    for (const char *p = id + n; *p; p++)
        if (!strchr(base62, *p))
            return false;
    return true;
}

bool sbxd_valid_name(const char *name)
{
    size_t n = name ? strlen(name) : 0;

    if (n == 0 || n > 63 || !strcmp(name, ".") || !strcmp(name, ".."))
        return false;
    for (; *name; name++)
        if (!(*name >= 'a' && *name <= 'z') && !(*name >= 'A' && *name <= 'Z') &&
            !(*name >= '0' && *name <= '9') && *name != '.' && *name != '_' && *name != '-')
            return false;
    return true;
}

int sbxd_mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(buf))
        return -ENAMETOOLONG;
    if (mkdir(path, mode) == 0 || errno == EEXIST)
        return 0;
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int sbxd_write_all(int fd, const void *data, size_t len)
{
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, (const char *)data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        off += (size_t)n;
    }
    return 0;
}

/* Writes a file whole or not at all: a temporary beside it, renamed over it
 * (and, when durable, fsync'd with its directory). */
int sbxd_write_file(const char *path, const void *data, size_t len, mode_t mode, bool durable)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    int fd, r = 0;

    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    r = sbxd_write_all(fd, data, len);
    if (r == 0 && durable && fsync(fd) < 0)
        r = -errno;
    close(fd);
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        return r;
    }
    if (!durable)
        return 0;
    /* The rename itself must survive a crash. */
    snprintf(dir, sizeof(dir), "%s", path);
    fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    return 0;
}

int sbxd_write_json(const char *path, json_t *json, bool durable)
{
    char *text = json_dumps(json, JSON_COMPACT);
    int r;

    if (!text)
        return -ENOMEM;
    r = sbxd_write_file(path, text, strlen(text), 0600, durable);
    free(text);
    return r;
}

json_t *sbxd_read_json(const char *path)
{
    json_error_t jerr;

    return json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
}

/* rm -rf of a records directory or a volume (the runtime's: no symlink
 * followed, no mount point entered, any depth). */
int sbxd_rm_rf(const char *path)
{
    sbx_error err;

    return sbx_rm_rf(path, &err);
}

/* ---- the id index ---- */

struct sbxd_index_slot {
    const char *key; /* NULL: empty; TOMBSTONE: deleted */
    void *val;
};

static const char tombstone[1];
#define TOMBSTONE tombstone

static size_t index_hash(const char *key)
{
    size_t h = 14695981039346656037ULL; /* FNV-1a */

    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 1099511628211ULL;
    return h;
}

/* The key's slot, or the empty one where it would go (NULL: none). */
static struct sbxd_index_slot *index_slot(const struct sbxd_index *ix, const char *key,
                                          bool for_insert)
{
    struct sbxd_index_slot *free_slot = NULL;

    if (!ix->cap)
        return NULL;
    for (size_t i = index_hash(key) & (ix->cap - 1), n = 0; n < ix->cap;
         i = (i + 1) & (ix->cap - 1), n++) {
        struct sbxd_index_slot *s = &ix->slots[i];
        if (!s->key)
            return for_insert ? (free_slot ? free_slot : s) : NULL;
        if (s->key == TOMBSTONE) {
            if (!free_slot)
                free_slot = s;
        } else if (!strcmp(s->key, key)) {
            return s;
        }
    }
    return for_insert ? free_slot : NULL;
}

static int index_resize(struct sbxd_index *ix, size_t cap)
{
    struct sbxd_index old = *ix;

    ix->slots = calloc(cap, sizeof(*ix->slots));
    if (!ix->slots) {
        *ix = old;
        return -ENOMEM;
    }
    ix->cap = cap;
    ix->used = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i].key && old.slots[i].key != TOMBSTONE) {
            *index_slot(ix, old.slots[i].key, true) = old.slots[i];
            ix->used++;
        }
    free(old.slots);
    return 0;
}

int sbxd_index_put(struct sbxd_index *ix, const char *key, void *val)
{
    struct sbxd_index_slot *s;

    /* At most 3/4 full, tombstones included; twice the live entries after
     * a resize. */
    if ((ix->used + 1) * 4 > ix->cap * 3) {
        size_t live = 0, cap = 8;
        for (size_t i = 0; i < ix->cap; i++)
            live += ix->slots[i].key && ix->slots[i].key != TOMBSTONE;
        while (cap < (live + 1) * 2)
            cap *= 2;
        if (index_resize(ix, cap) < 0)
            return -ENOMEM;
    }
    s = index_slot(ix, key, true);
    if (!s->key)
        ix->used++;
    s->key = key;
    s->val = val;
    return 0;
}

void *sbxd_index_get(const struct sbxd_index *ix, const char *key)
{
    struct sbxd_index_slot *s = index_slot(ix, key, false);

    return s ? s->val : NULL;
}

void sbxd_index_del(struct sbxd_index *ix, const char *key)
{
    struct sbxd_index_slot *s = index_slot(ix, key, false);

    if (s) {
        s->key = TOMBSTONE;
        s->val = NULL;
    }
}

void sbxd_index_free(struct sbxd_index *ix)
{
    free(ix->slots);
    *ix = (struct sbxd_index){0};
}
