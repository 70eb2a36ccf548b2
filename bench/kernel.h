/* kernel.h — what the benchmark programs read of the kernel's memory: the
 * slab caches in use and where a process's memory cgroup is. */
#ifndef SBX_BENCH_KERNEL_H
#define SBX_BENCH_KERNEL_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

struct slab {
    char name[64];
    long long bytes; /* active objects × their size */
};

/* Every cache of /proc/slabinfo (root only), or NULL with *ret_n 0.  The
 * objects in use, where SUnreclaim counts slab pages: free objects left in
 * old slabs hide new ones from it. */
static inline struct slab *read_slabs(size_t *ret_n)
{
    FILE *f = fopen("/proc/slabinfo", "re");
    struct slab *sl = NULL;
    size_t n = 0, cap = 0;
    char line[512];

    *ret_n = 0;
    if (!f)
        return NULL;
    while (fgets(line, sizeof(line), f)) {
        char name[64];
        long long active, objsize;

        if (line[0] == '#' || sscanf(line, "%63s %lld %*d %lld", name, &active, &objsize) != 3)
            continue;
        if (n == cap) {
            struct slab *grown;

            cap = cap ? 2 * cap : 256;
            grown = realloc(sl, cap * sizeof(*sl));
            if (!grown) {
                free(sl);
                fclose(f);
                return NULL;
            }
            sl = grown;
        }
        snprintf(sl[n].name, sizeof(sl[n].name), "%s", name);
        sl[n].bytes = active * objsize;
        n++;
    }
    fclose(f);
    *ret_n = n;
    return sl;
}

/* The directory of pid's memory cgroup: in the v1 memory hierarchy, else
 * (*v2) in the unified one when /sys/fs/cgroup is a cgroup2 mount.
 * -1 if it has none. */
static inline int memcg_dir_of(pid_t pid, char *dir, size_t size, bool *v2)
{
    char path[64], line[4096];
    FILE *f;
    int r = -1;

    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f)) {
        char *ctrl = strchr(line, ':'), *cg = ctrl ? strchr(ctrl + 1, ':') : NULL;

        if (!cg)
            continue;
        line[strcspn(line, "\n")] = '\0';
        *cg++ = '\0';
        if (!strcmp(ctrl + 1, "memory")) {
            snprintf(dir, size, "/sys/fs/cgroup/memory%s", strcmp(cg, "/") ? cg : "");
            *v2 = false;
            r = 0;
            break;
        }
        if (!strcmp(ctrl + 1, "") && !strcmp(line, "0") &&
            access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0) {
            snprintf(dir, size, "/sys/fs/cgroup%s", strcmp(cg, "/") ? cg : "");
            *v2 = true;
            r = 0;
        }
    }
    fclose(f);
    return r;
}

#endif
