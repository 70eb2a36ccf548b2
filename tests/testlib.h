/* testlib.h — helpers for tests that run real sandboxes.
 *
 * Each test gets its own run and state directories (temporary, removed at
 * teardown) and the busybox image with one extra layer on top holding the
 * static probe program at /usr/local/bin/sbx-probe (tests/sbx-probe.c). */
#ifndef SBX_TESTLIB_H
#define SBX_TESTLIB_H

#include "sbx.h"

#include <check.h>
#include <limits.h>
#include <stdbool.h>

struct sbx_test_ctx {
    char run_dir[PATH_MAX];
    char state_dir[PATH_MAX];
    char probe_layer[PATH_MAX];
    char *layers[3];
    char **env;
    char cgroup_parent[64];
    int counter;
};

/* Exits 77 with a printed reason when the tests cannot run here (not root,
 * no busybox image, no probe). Call once from main(). */
void sbx_test_require(void);

void sbx_test_setup(struct sbx_test_ctx *ctx);
/* Removes the temporary directories; fails the test if anything a sandbox
 * made is left: directories, uid reservations, cgroups, child processes. */
void sbx_test_teardown(struct sbx_test_ctx *ctx);

/* After the suite: cleans what failed tests left (their teardown does not
 * run) and returns how many sandboxes it found. Call from main(). */
int sbx_test_final_sweep(void);

/* A config with id, dirs, layers, env and cgroup parent filled in. */
struct sbx_config sbx_test_config(struct sbx_test_ctx *ctx);

/* Runs argv as the entrypoint of a new sandbox made from *cfg (NULL: the
 * defaults), captures stdout and stderr together, waits, destroys.
 * Returns the captured output (malloc'd, NUL-terminated). */
char *sbx_test_run(struct sbx_test_ctx *ctx, const struct sbx_config *cfg, const char *const *argv,
                   struct sbx_exit *ret_exit);

/* Runs argv with exec in sb, capturing stdout+stderr; returns the output and
 * stores the returncode. */
char *sbx_test_exec(sbx_sandbox *sb, const char *const *argv, const char *const *env,
                    const char *workdir, int *ret_returncode);

/* The value of the first "key value" line of out, or NULL. Static buffer. */
const char *sbx_test_value(const char *out, const char *key);

/* Reads a whole file into a malloc'd string (NULL if it can't be read). */
char *sbx_test_slurp(const char *path);

/* The number of entries in a directory (-1 if missing). */
int sbx_test_count_dir(const char *path);

#define PROBE "/usr/local/bin/sbx-probe"

#endif
