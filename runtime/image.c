/* image.c — reads an image's config from the store sbx-mkimage writes. */
#include "image.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The tools link only the public API, so this file formats its own errors
 * (the runtime's sbx__error is hidden). */
__attribute__((format(printf, 3, 4))) static int image_error(sbx_error *err, int errnum,
                                                             const char *fmt, ...)
{
    if (err) {
        char what[384];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        err->code = errnum;
        snprintf(err->message, sizeof(err->message), "%s: %s", what, strerror(errnum));
    }
    return -errnum;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 128 || !strcmp(s, ".") || !strcmp(s, ".."))
        return false;
    for (; *s; s++)
        if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') && !(*s >= '0' && *s <= '9') &&
            *s != '.' && *s != '_' && *s != '-')
            return false;
    return true;
}

static void strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

/* A JSON array of strings → a NULL-terminated vector; prefix (may be NULL)
 * is prepended to every element. */
static char **strv_from_json(json_t *arr, const char *prefix)
{
    size_t n = json_array_size(arr), i;
    char **v = calloc(n + 1, sizeof(char *));

    if (!v)
        return NULL;
    for (i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s || (prefix && !valid_name(s)) ||
            asprintf(&v[i], "%s%s", prefix ? prefix : "", s) < 0) {
            v[i] = NULL;
            strv_free(v);
            return NULL;
        }
    }
    return v;
}

void sbx_image_free(struct sbx_image *img)
{
    if (!img)
        return;
    free(img->name);
    strv_free(img->layers);
    strv_free(img->env);
    free(img->workdir);
    strv_free(img->entrypoint);
    free(img);
}

int sbx_image_load(const char *state_dir, const char *name, struct sbx_image **ret, sbx_error *err)
{
    char path[PATH_MAX], prefix[PATH_MAX];
    json_error_t jerr;
    json_t *root, *layers, *env, *ep;
    const char *workdir;
    struct sbx_image *img;

    if (!valid_name(name))
        return image_error(err, EINVAL, "invalid image name `%s`", name);
    snprintf(path, sizeof(path), "%s/images/%s/config.json", state_dir, name);
    snprintf(prefix, sizeof(prefix), "%s/layers/", state_dir);
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        struct stat st;
        return image_error(err, stat(path, &st) < 0 ? ENOENT : EINVAL,
                           "load image config `%s` (build it with sbx-mkimage)", path);
    }
    layers = json_object_get(root, "layers");
    env = json_object_get(root, "env");
    ep = json_object_get(root, "entrypoint");
    workdir = json_string_value(json_object_get(root, "workdir"));
    img = calloc(1, sizeof(*img));
    if (!img) {
        json_decref(root);
        return image_error(err, ENOMEM, "load image `%s`", name);
    }
    if (!json_is_array(layers) || json_array_size(layers) == 0 ||
        (env && !json_is_null(env) && !json_is_array(env)) ||
        (ep && !json_is_null(ep) && !json_is_array(ep))) {
        json_decref(root);
        sbx_image_free(img);
        return image_error(err, EINVAL, "malformed image config `%s`", path);
    }
    img->name = strdup(name);
    img->layers = strv_from_json(layers, prefix);
    img->env = json_is_array(env) ? strv_from_json(env, NULL) : calloc(1, sizeof(char *));
    img->workdir = strdup(workdir ? workdir : "/");
    img->entrypoint = json_is_array(ep) ? strv_from_json(ep, NULL) : NULL;
    json_decref(root);
    if (!img->name || !img->layers || !img->env || !img->workdir ||
        (json_is_array(ep) && !img->entrypoint)) {
        sbx_image_free(img);
        return image_error(err, EINVAL, "malformed image config `%s`", path);
    }
    *ret = img;
    return 0;
}
