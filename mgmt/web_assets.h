/* The dashboard's files (mgmt/web/), built into cairn-mdm so that it serves
 * them with no file to install and no request to any other host. The table
 * is generated at build time from the files (mgmt/web/embed.cmake). */
#ifndef CAIRN_WEB_ASSETS_H
#define CAIRN_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
    const char *path;         /* as requested: "/", "/app.js", ... */
    const char *content_type; /* "text/html; charset=utf-8", ... */
    const unsigned char *data;
    size_t len;
};

/* The asset served at path, or NULL. */
const struct web_asset *web_asset_find(const char *path);

#endif
