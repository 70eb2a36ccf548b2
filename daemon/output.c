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

ssize_t sbxd_output_read(struct sbxd *d, const char *sandbox_id, const char *proc_id, int stream,
                         uint64_t offset, void *buf, size_t len, uint64_t *ret_dropped)
{
    const char *name = stream ? "stderr" : "stdout";
    char dir[PATH_MAX], path[PATH_MAX + 64];
    uint64_t start = 0, lowest = 0;
    ssize_t total = 0;

    snprintf(dir, sizeof(dir), "%s/records/%s/procs/%s", d->cfg.state_dir, sandbox_id, proc_id);
    if (len == 0) {
        /* Only asked what has been dropped. */
        (void)find_segment(dir, name, offset, &start, &lowest);
        if (ret_dropped)
            *ret_dropped = lowest;
        return 0;
    }
    /* A read may span the end of one segment and the start of the next. */
    while ((size_t)total < len) {
        int fd, r;
        ssize_t n;

        r = find_segment(dir, name, offset, &start, &lowest);
        if (r == -ENOENT && total == 0 && offset < lowest) {
            /* Asked for dropped bytes: resume at the oldest kept. */
            offset = lowest;
            continue;
        }
        if (r < 0)
            break;
        snprintf(path, sizeof(path), "%s/%s.%llu", dir, name, (unsigned long long)start);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            break; /* rotated away meanwhile: the next call finds the next one */
        n = pread(fd, (char *)buf + total, len - (size_t)total, (off_t)(offset - start));
        close(fd);
        if (n <= 0)
            break;
        total += n;
        offset += (uint64_t)n;
    }
    if (ret_dropped)
        *ret_dropped = lowest;
    return total;
}

uint64_t sbxd_output_size(struct sbxd *d, const char *sandbox_id, const char *proc_id, int stream)
{
    const char *name = stream ? "stderr" : "stdout";
    char dir[PATH_MAX], path[PATH_MAX + 64];
    uint64_t start, lowest;
    struct stat st;

    snprintf(dir, sizeof(dir), "%s/records/%s/procs/%s", d->cfg.state_dir, sandbox_id, proc_id);
    if (find_segment(dir, name, UINT64_MAX, &start, &lowest) < 0)
        return 0;
    snprintf(path, sizeof(path), "%s/%s.%llu", dir, name, (unsigned long long)start);
    return stat(path, &st) == 0 ? start + (uint64_t)st.st_size : start;
}
