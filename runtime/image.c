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

/* A JSON array of strings → a NULL-terminated vector. */
static char **strv_from_json(json_t *arr)
{
    size_t n = json_array_size(arr), i;
    char **v = calloc(n + 1, sizeof(char *));

    if (!v)
        return NULL;
    for (i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s || !(v[i] = strdup(s))) {
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
    free(img->user);
    free(img);
}

/* The store (of stores) holding layers/NAME, or NULL. */
static const char *layer_store(const char *const *stores, const char *layer)
{
    char path[PATH_MAX];
    struct stat st;

    for (size_t i = 0; stores[i]; i++) {
        snprintf(path, sizeof(path), "%s/layers/%s", stores[i], layer);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return stores[i];
    }
    return NULL;
}

int sbx_image_load_from(const char *const *stores, const char *name, struct sbx_image **ret,
                        sbx_error *err)
{
    char path[PATH_MAX];
    json_error_t jerr;
    json_t *root = NULL, *layers, *env, *ep, *l;
    const char *workdir, *user;
    struct sbx_image *img;
    struct stat st;
    size_t i;

    if (!valid_name(name))
        return image_error(err, EINVAL, "invalid image name `%s`", name);
    for (i = 0; stores[i]; i++) {
        snprintf(path, sizeof(path), "%s/images/%s/config.json", stores[i], name);
        if (stat(path, &st) == 0)
            break;
    }
    if (!stores[i])
        return image_error(err, ENOENT, "load image `%s` (build it with sbx-mkimage)", name);
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return image_error(err, EINVAL, "load image config `%s`", path);
    layers = json_object_get(root, "layers");
    env = json_object_get(root, "env");
    ep = json_object_get(root, "entrypoint");
    workdir = json_string_value(json_object_get(root, "workdir"));
    user = json_string_value(json_object_get(root, "user"));
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
    img->layers = calloc(json_array_size(layers) + 1, sizeof(char *));
    json_array_foreach(layers, i, l)
    {
        const char *ln = json_string_value(l),
                   *store = ln && valid_name(ln) ? layer_store(stores, ln) : NULL;
        if (!img->layers)
            break;
        if (!store) {
            int r = image_error(err, ENOENT, "image `%s`: layer `%s`", name, ln ? ln : "?");
            json_decref(root);
            sbx_image_free(img);
            return r;
        }
        if (asprintf(&img->layers[i], "%s/layers/%s", store, ln) < 0) {
            img->layers[i] = NULL;
            break;
        }
    }
    img->env = json_is_array(env) ? strv_from_json(env) : calloc(1, sizeof(char *));
    img->workdir = strdup(workdir ? workdir : "/");
    img->entrypoint = json_is_array(ep) ? strv_from_json(ep) : NULL;
    img->user = user ? strdup(user) : NULL;
    /* (judged before the config, which they point into, goes) */
    bool bad = !img->name || !img->layers ||
               (json_array_size(layers) && !img->layers[json_array_size(layers) - 1]) ||
               !img->env || !img->workdir || (json_is_array(ep) && !img->entrypoint) ||
               (user && !img->user);
    json_decref(root);
    if (bad) {
        sbx_image_free(img);
        return image_error(err, EINVAL, "malformed image config `%s`", path);
    }
    *ret = img;
    return 0;
}

int sbx_image_load(const char *state_dir, const char *name, struct sbx_image **ret, sbx_error *err)
{
    const char *const stores[] = {state_dir, NULL};

    return sbx_image_load_from(stores, name, ret, err);
}
