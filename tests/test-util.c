/* test-util.c — the runtime's helpers that need no namespaces: removal that
 * never follows a symlink out of its tree, directory creation, uid range
 * reservations, error messages.  Also runs under valgrind (make
 * check-valgrind). */
#include "internal.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

static char tmp[64];

static void setup(void)
{
    strcpy(tmp, "/tmp/sbx-util.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmp));
}

static void teardown(void)
{
    sbx__rm_rf(tmp, NULL);
}

static void touch(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ck_assert_int_ge(fd, 0);
    close(fd);
}

START_TEST(test_error_names_what_failed)
{
    sbx_error err;
    int r = sbx__error(&err, ENOENT, "open `%s`", "/x/y");

    ck_assert_int_eq(r, -ENOENT);
    ck_assert_int_eq(err.code, ENOENT);
    ck_assert_str_eq(err.message, "open `/x/y`: No such file or directory");
    ck_assert_int_eq(sbx__error(NULL, EPERM, "x"), -EPERM);
}
END_TEST

START_TEST(test_mkdir_p_and_files)
{
    char path[128], buf[32];
    sbx_error err;

    snprintf(path, sizeof(path), "%s/a/b/c", tmp);
    ck_assert_int_eq(sbx__mkdir_p(path, 0755, &err), 0);
    ck_assert_int_eq(sbx__mkdir_p(path, 0755, &err), 0); /* exists: fine */
    snprintf(path, sizeof(path), "%s/a/b/c/f", tmp);
    touch(path);
    ck_assert_int_eq(sbx__write_file(path, "hello", &err), 0);
    ck_assert_int_eq(sbx__read_file_at(AT_FDCWD, path, buf, sizeof(buf), &err), 5);
    ck_assert_str_eq(buf, "hello");
    /* A short buffer truncates but stays NUL-terminated. */
    ck_assert_int_eq(sbx__read_file_at(AT_FDCWD, path, buf, 3, &err), 2);
    ck_assert_str_eq(buf, "he");
    snprintf(path, sizeof(path), "%s/missing", tmp);
    ck_assert_int_eq(sbx__write_file(path, "x", &err), -ENOENT);
    ck_assert_msg(strstr(err.message, "missing") != NULL, "%s", err.message);
}
END_TEST

/* A tree planted by a sandbox may hold symlinks to host paths: removing it
 * must remove the links, never what they point to. */
START_TEST(test_rm_rf_never_follows_symlinks)
{
    char victim[128], victim_file[160], tree[128], path[192];
    sbx_error err;

    snprintf(victim, sizeof(victim), "%s/victim", tmp);
    ck_assert_int_eq(mkdir(victim, 0755), 0);
    snprintf(victim_file, sizeof(victim_file), "%s/precious", victim);
    touch(victim_file);

    snprintf(tree, sizeof(tree), "%s/tree", tmp);
    snprintf(path, sizeof(path), "%s/tree/d/e", tmp);
    ck_assert_int_eq(sbx__mkdir_p(path, 0755, &err), 0);
    snprintf(path, sizeof(path), "%s/tree/d/link-dir", tmp);
    ck_assert_int_eq(symlink(victim, path), 0);
    snprintf(path, sizeof(path), "%s/tree/d/link-file", tmp);
    ck_assert_int_eq(symlink(victim_file, path), 0);
    /* A directory without permissions is still removed. */
    snprintf(path, sizeof(path), "%s/tree/d/e", tmp);
    ck_assert_int_eq(chmod(path, 0), 0);

    ck_assert_int_eq(sbx__rm_rf(tree, &err), 0);
    ck_assert_int_eq(access(tree, F_OK), -1);
    ck_assert_int_eq(access(victim_file, F_OK), 0);
    /* Removing what is not there is not an error. */
    ck_assert_int_eq(sbx__rm_rf(tree, &err), 0);
    /* A symlink given as the top is unlinked, not followed. */
    snprintf(path, sizeof(path), "%s/top-link", tmp);
    ck_assert_int_eq(symlink(victim, path), 0);
    ck_assert_int_eq(sbx__rm_rf(path, &err), 0);
    ck_assert_int_eq(access(victim_file, F_OK), 0);
}
END_TEST

/* A tree deeper than the fds a process may hold (a sandbox makes one as
 * deep as it likes in a volume) goes whole, with one directory fd; a mount
 * point inside is never entered. */
START_TEST(test_rm_rf_any_depth)
{
    char tree[128];
    struct rlimit rl, low = {.rlim_cur = 64, .rlim_max = 0};
    sbx_error err;
    int fd;

    snprintf(tree, sizeof(tree), "%s/deep", tmp);
    ck_assert_int_eq(mkdir(tree, 0755), 0);
    fd = open(tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    for (int i = 0; i < 5000; i++) {
        int next;
        ck_assert_int_eq(mkdirat(fd, "d", 0755), 0);
        if (i % 7 == 0)
            close(openat(fd, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ck_assert_int_ge(next, 0);
        close(fd);
        fd = next;
    }
    close(fd);
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    low.rlim_max = rl.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    ck_assert_int_eq(sbx_rm_rf(tree, &err), 0);
    ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    ck_assert_int_eq(access(tree, F_OK), -1);
}
END_TEST

START_TEST(test_uid_ranges_unique_and_released)
{
    char dir[128];
    uid_t a, b, c;
    sbx_error err;

    snprintf(dir, sizeof(dir), "%s/sandboxes/one", tmp);
    ck_assert_int_eq(sbx__mkdir_p(dir, 0711, &err), 0);
    snprintf(dir, sizeof(dir), "%s/sandboxes/two", tmp);
    ck_assert_int_eq(sbx__mkdir_p(dir, 0711, &err), 0);

    ck_assert_int_eq(sbx__uid_range_alloc(tmp, "one", &a, &err), 0);
    ck_assert_int_eq(sbx__uid_range_alloc(tmp, "two", &b, &err), 0);
    ck_assert_uint_ne(a, b);
    ck_assert_uint_ge(a, 100000);
    ck_assert_uint_eq(a % SBX_UID_RANGE, 0);
    ck_assert_uint_eq(b % SBX_UID_RANGE, 0);
    /* The same id hashes to the same first slot: it must not get a taken one. */
    sbx__uid_range_free(tmp, "one");
    snprintf(dir, sizeof(dir), "%s/uids", tmp);
    ck_assert_int_eq(sbx__uid_range_alloc(tmp, "one", &c, &err), 0);
    ck_assert_uint_eq(c, a);
    sbx__uid_range_free(tmp, "one");
    sbx__uid_range_free(tmp, "two");
    {
        DIR *d = opendir(dir);
        struct dirent *de;
        int n = 0;
        ck_assert_ptr_nonnull(d);
        while ((de = readdir(d)))
            n += de->d_name[0] != '.';
        closedir(d);
        ck_assert_int_eq(n, 0);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("util");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_error_names_what_failed);
    tcase_add_test(tc, test_mkdir_p_and_files);
    tcase_add_test(tc, test_rm_rf_never_follows_symlinks);
    tcase_add_test(tc, test_rm_rf_any_depth);
    tcase_add_test(tc, test_uid_ranges_unique_and_released);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
