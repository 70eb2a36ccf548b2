/* output.c — reading a process's output from the monitor's segment files
 * (procs/ID/stdout.OFFSET, see monitor-proto.h).  The files are the truth:
 * they hold everything written, up to the output limit, whether or not the
 * daemon was running at the time. */
#include "sandboxd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Finds the segment holding `offset`: the largest start <= offset.  Also
 * reports the smallest start (what was dropped before it). */
static int find_segment(const char *dir, const char *stream, uint64_t offset, uint64_t *ret_start,
                        uint64_t *ret_lowest)
{
    DIR *dh = opendir(dir);
    struct dirent *de;
    size_t n = strlen(stream);
    uint64_t best = 0, lowest = UINT64_MAX;
    bool found = false;

    if (!dh)
        return -errno;
    while ((de = readdir(dh))) {
        char *end;
        unsigned long long start;

        if (strncmp(de->d_name, stream, n) || de->d_name[n] != '.' ||
            !(de->d_name[n + 1] >= '0' && de->d_name[n + 1] <= '9'))
            continue;
        start = strtoull(de->d_name + n + 1, &end, 10);
        if (*end)
            continue;
        if (start < lowest)
            lowest = start;
        if (start <= offset && (!found || start > best)) {
            best = start;
            found = true;
        }
    }
    closedir(dh);
    *ret_lowest = lowest == UINT64_MAX ? 0 : lowest;
    if (!found)
        return -ENOENT;
    *ret_start = best;
    return 0;
}

static void stream_dir(struct sbxd *d, const char *sandbox_id, const char *proc_id, char *dir,
                       size_t len)
{
    snprintf(dir, len, "%s/records/%s/procs/%s", d->cfg.state_dir, sandbox_id, proc_id);
}

uint64_t sbxd_output_oldest(struct sbxd *d, const char *sandbox_id, const char *proc_id, int stream)
{
    char dir[PATH_MAX];
    uint64_t start = 0, lowest = 0;

    stream_dir(d, sandbox_id, proc_id, dir, sizeof(dir));
    (void)find_segment(dir, stream ? "stderr" : "stdout", 0, &start, &lowest);
    return lowest;
}

void sbxd_output_cursor_close(struct sbxd_output_cursor *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* The cursor keeps the segment it reads open: the next read is one pread(),
 * and the directory is listed only at a segment's end.  A segment the
 * monitor deletes meanwhile (the output limit) stays readable through it. */
ssize_t sbxd_output_pull(struct sbxd *d, const char *sandbox_id, const char *proc_id, int stream,
                         struct sbxd_output_cursor *c, uint64_t *offset, void *buf, size_t len)
{
    const char *name = stream ? "stderr" : "stdout";
    char dir[PATH_MAX], path[PATH_MAX + 64];

    if (len == 0)
        return 0;
    dir[0] = '\0';
    /* At most: the open segment's end, the next segment, a segment
     * rotated away between the listing and the open. */
    for (int tries = 0; tries < 4; tries++) {
        uint64_t start = 0, lowest = 0;
        int r;

        if (c->fd >= 0) {
            ssize_t n = pread(c->fd, buf, len, (off_t)(*offset - c->start));
            if (n < 0 && errno == EINTR) {
                tries--;
                continue;
            }
            if (n > 0) {
                *offset += (uint64_t)n;
                return n;
            }
        }
        /* At the end of the open segment, or none open: which one holds
         * *offset now? */
        if (!dir[0])
            stream_dir(d, sandbox_id, proc_id, dir, sizeof(dir));
        r = find_segment(dir, name, *offset, &start, &lowest);
        if (r == -ENOENT && *offset < lowest)
            return -ERANGE; /* dropped while the reader was behind */
        if (r < 0 || (c->fd >= 0 && start == c->start))
            return 0; /* nothing beyond *offset yet */
        sbxd_output_cursor_close(c);
        snprintf(path, sizeof(path), "%s/%s.%llu", dir, name, (unsigned long long)start);
        c->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (c->fd < 0) {
            c->fd = -1;
            if (errno != ENOENT)
                return -errno;
            continue; /* rotated away meanwhile: look again */
        }
        c->start = start;
    }
    return 0;
}

uint64_t sbxd_output_size(struct sbxd *d, const char *sandbox_id, const char *proc_id, int stream)
{
    const char *name = stream ? "stderr" : "stdout";
    char dir[PATH_MAX], path[PATH_MAX + 64];
    uint64_t start, lowest;
    struct stat st;

    stream_dir(d, sandbox_id, proc_id, dir, sizeof(dir));
    if (find_segment(dir, name, UINT64_MAX, &start, &lowest) < 0)
        return 0;
    snprintf(path, sizeof(path), "%s/%s.%llu", dir, name, (unsigned long long)start);
    return stat(path, &st) == 0 ? start + (uint64_t)st.st_size : start;
}
