/* The REST API's route table: for each route its method and path, the
 * change it makes (the MgmtOp the CLI sends for the same command), the
 * fields its body takes and where they go in the request, what the CLI
 * adds to the request beyond them (an address check, a --force, the
 * removal's words), and how the answer is rendered from a fresh status.
 * docs/openapi.yaml describes this table; test_rest.py checks that they
 * agree. */
#include <stdio.h>
#include <string.h>

#include "cmap.h"
#include "rest.h"
#include "util.h"

#define API "/api/v1"

/* ---- renderers ---- */

/* The status, and the request API of the MDM that answered it (the leader) */
static json_t *r_status(struct rest_ctx *x, const Cairn__MgmtReply *rep, char *err, size_t len)
{
    (void)err, (void)len;
    json_t *o = rest_json_status(rep);
    if (o && json_object_set_new(o, "answered_by", rest_json_str(x->q.answered_by)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

#define LIST_RENDERER(name, fn)                                                                    \
    static json_t *name(struct rest_ctx *x, const Cairn__MgmtReply *rep, char *err, size_t len)    \
    {                                                                                              \
        (void)x, (void)err, (void)len;                                                             \
        return fn(rep);                                                                            \
    }
LIST_RENDERER(r_sds_list, rest_json_sds_list)
LIST_RENDERER(r_device_list, rest_json_device_list)
LIST_RENDERER(r_fault_set_list, rest_json_fault_set_list)
LIST_RENDERER(r_pool_list, rest_json_pool_list)
LIST_RENDERER(r_volume_list, rest_json_volume_list)
LIST_RENDERER(r_sdc_list, rest_json_sdc_list)
LIST_RENDERER(r_mapping_list, rest_json_mapping_list)
LIST_RENDERER(r_mdm_list, rest_json_mdm_list)

/* The objects a request names, by the MDM's words for their absence. */
static const Cairn__Sds *find_sds(const Cairn__ClusterMap *m, const char *name, char *err,
                                  size_t len)
{
    for (size_t i = 0; i < m->n_sds; i++)
        if (!strcmp(m->sds[i]->name, name))
            return m->sds[i];
    rest_errf(err, len, "no SDS named '%s'", name);
    return NULL;
}

static const Cairn__Volume *find_volume(const Cairn__ClusterMap *m, const char *name, char *err,
                                        size_t len)
{
    for (size_t i = 0; i < m->n_volumes; i++)
        if (!strcmp(m->volumes[i]->name, name))
            return m->volumes[i];
    rest_errf(err, len, "no volume named '%s'", name);
    return NULL;
}

static const Cairn__Sdc *find_sdc(const Cairn__ClusterMap *m, const char *name, char *err,
                                  size_t len)
{
    for (size_t i = 0; i < m->n_sdcs; i++)
        if (!strcmp(m->sdcs[i]->name, name))
            return m->sdcs[i];
    rest_errf(err, len, "no SDC named '%s'", name);
    return NULL;
}

static json_t *r_sds(struct rest_ctx *x, const Cairn__MgmtReply *rep, char *err, size_t len)
{
    const Cairn__Sds *s = find_sds(rep->map, x->req.name, err, len);
    return s ? rest_json_sds(rep, s) : NULL;
}

static json_t *r_device(struct rest_ctx *x, const Cairn__MgmtReply *rep, char *err, size_t len)
{
    const Cairn__Sds *s = find_sds(rep->map, x->req.name, err, len);
    for (size_t i = 0; s && i < rep->map->n_devices; i++) {
        const Cairn__Device *d = rep->map->devices[i];
        if (d->sds_id == s->id && !strcmp(d->path, x->req.paths[0]))
            return rest_json_device(rep, d);
    }
    if (s)
        rest_errf(err, len, "SDS '%s' has no device %s", s->name, x->req.paths[0]);
    return NULL;
}

static json_t *r_fault_set(struct rest_ctx *x, const Cairn__MgmtReply *rep, char *err, size_t len)
{
    for (size_t i = 0; i < rep->map->n_fault_sets; i++)
        if (!strcmp(rep->map->fault_sets[i]->name, x->req.fault_set))
            return rest_json_fault_set(rep, rep->map->fault_sets[i]);
    rest_errf(err, len, "no fault set named '%s'", x->req.fault_set);
    return NULL;
}

static json_t *r_pool(struct rest_ctx *x, const Cairn__MgmtReply *rep, char *err, size_t len)
{
    for (size_t i = 0; i < rep->map->n_pools; i++)
        if (!strcmp(rep->map->pools[i]->name, x->req.pool))
            return rest_json_pool(rep, rep->map->pools[i]);
    rest_errf(err, len, "no storage pool named '%s'", x->req.pool);
    return NULL;
}

static json_t *r_volume(struct rest_ctx *x, const Cairn__MgmtReply *rep, char *err, size_t len)
{
    const Cairn__Volume *v = find_volume(rep->map, x->req.volume, err, len);
    return v ? rest_json_volume(rep, v) : NULL;
}

/* A clone's answer: the new volume, named by the body */
static json_t *r_clone(struct rest_ctx *x, const Cairn__MgmtReply *rep, char *err, size_t len)
{
    const Cairn__Volume *v = find_volume(rep->map, x->req.name, err, len);
    return v ? rest_json_volume(rep, v) : NULL;
}

static json_t *r_sdc(struct rest_ctx *x, const Cairn__MgmtReply *rep, char *err, size_t len)
{
    const Cairn__Sdc *c = find_sdc(rep->map, x->req.sdc, err, len);
    return c ? rest_json_sdc(rep, c) : NULL;
}

/* A snapshot named VOLUME@SNAPSHOT, with the MDM's words for its absence
 * (state_snapshots.c). */
static const Cairn__Snapshot *find_snapshot(const Cairn__ClusterMap *m, const char *spec, char *err,
                                            size_t len)
{
    const char *at = strchr(spec, '@');
    char vol[256];
    if (!at || at == spec || !at[1] || (size_t)(at - spec) >= sizeof(vol)) {
        rest_errf(err, len, "name a snapshot as VOLUME@SNAPSHOT, not '%.64s'", spec);
        return NULL;
    }
    memcpy(vol, spec, (size_t)(at - spec));
    vol[at - spec] = 0;
    const Cairn__Volume *v = find_volume(m, vol, err, len);
    const Cairn__Snapshot *sn = v ? cmap_snapshot_by_name(m, v->id, at + 1) : NULL;
    if (v && !sn)
        rest_errf(err, len, "volume '%s' has no snapshot named '%.64s'", v->name, at + 1);
    return sn;
}

static json_t *r_mapping(struct rest_ctx *x, const Cairn__MgmtReply *rep, char *err, size_t len)
{
    /* a volume, or a snapshot (VOL@SNAP), which is mapped by its own id */
    uint64_t id = 0;
    if (strchr(x->req.volume, '@')) {
        const Cairn__Snapshot *sn = find_snapshot(rep->map, x->req.volume, err, len);
        id = sn ? sn->id : 0;
    } else {
        const Cairn__Volume *v = find_volume(rep->map, x->req.volume, err, len);
        id = v ? v->id : 0;
    }
    const Cairn__Sdc *c = id ? find_sdc(rep->map, x->req.sdc, err, len) : NULL;
    for (size_t i = 0; c && i < rep->map->n_mappings; i++) {
        const Cairn__Mapping *mp = rep->map->mappings[i];
        if (mp->volume_id == id && mp->sdc_id == c->id)
            return rest_json_mapping(rep, mp);
    }
    if (c)
        rest_errf(err, len, "volume '%s' is not mapped to SDC '%s'", x->req.volume, c->name);
    return NULL;
}

/* GET /snapshots (?volume=NAME: that volume's only) */
static json_t *r_snapshot_list(struct rest_ctx *x, const Cairn__MgmtReply *rep, char *err,
                               size_t len)
{
    int one = x->req.volume && x->req.volume[0];
    const Cairn__Volume *v = one ? find_volume(rep->map, x->req.volume, err, len) : NULL;
    if (one && !v)
        return NULL;
    return rest_json_snapshot_list(rep, v ? v->id : 0);
}

static json_t *r_snapshot(struct rest_ctx *x, const Cairn__MgmtReply *rep, char *err, size_t len)
{
    const Cairn__Snapshot *sn = find_snapshot(rep->map, x->req.volume, err, len);
    return sn ? rest_json_snapshot(rep, sn) : NULL;
}

/* A creation's answer: the snapshot, or a group's snapshots (a list). */
static json_t *r_snapshot_created(struct rest_ctx *x, const Cairn__MgmtReply *rep, char *err,
                                  size_t len)
{
    json_t *a = x->req.group[0] ? json_array() : NULL;
    for (size_t i = 0; i < x->req.n_volumes; i++) {
        const Cairn__Volume *v = find_volume(rep->map, x->req.volumes[i], err, len);
        const Cairn__Snapshot *sn = v ? cmap_snapshot_by_name(rep->map, v->id, x->req.name) : NULL;
        if (!sn) {
            if (v)
                rest_errf(err, len, "volume '%s' has no snapshot named '%s'", v->name, x->req.name);
            json_decref(a);
            return NULL;
        }
        if (!a)
            return rest_json_snapshot(rep, sn);
        json_array_append_new(a, rest_json_snapshot(rep, sn));
    }
    return a;
}

/* ---- builders: what the CLI adds to the request beyond its fields ---- */

/* A query flag: absent is false. 0, or -1 with err set. */
static int query_flag(struct http_request *r, const char *key, protobuf_c_boolean *out, char *err,
                      size_t len)
{
    const char *v = http_query(r, key);
    if (!v || !strcmp(v, "false") || !strcmp(v, "0")) {
        *out = 0;
    } else if (!strcmp(v, "true") || !strcmp(v, "1") || !v[0]) {
        *out = 1;
    } else {
        rest_errf(err, len, "query parameter '%s' must be true or false, not '%s'", key, v);
        return -1;
    }
    return 0;
}

static int b_sds_add(struct rest_ctx *x, struct http_request *r, char *err, size_t len)
{
    (void)r;
    char host[256];
    int port;
    if (addr_split(x->req.addr, host, sizeof(host), &port) < 0) {
        rest_errf(err, len, "invalid address '%s' (want HOST:PORT)", x->req.addr);
        return -1;
    }
    return 0;
}

static int b_sds_remove(struct rest_ctx *x, struct http_request *r, char *err, size_t len)
{
    if (query_flag(r, "force", &x->req.force, err, len) < 0)
        return -1;
    x->info = x->req.force ? "forgotten; its copies are rebuilt from the others"
                           : "draining: its copies move to other SDSs, then it is forgotten "
                             "(see GET /api/v1/status)";
    return 0;
}

static int b_maintenance(struct rest_ctx *x, struct http_request *r, char *err, size_t len)
{
    (void)r, (void)err, (void)len;
    x->req.op = json_is_true(json_object_get(x->body, "enter"))
                    ? CAIRN__MGMT_OP__OP_MAINTENANCE_ENTER
                    : CAIRN__MGMT_OP__OP_MAINTENANCE_EXIT;
    return 0;
}

static int b_device_remove(struct rest_ctx *x, struct http_request *r, char *err, size_t len)
{
    const char *sds = http_query(r, "sds"), *path = http_query(r, "path");
    if (!sds || !path) {
        rest_errf(err, len, "query parameters 'sds' and 'path' are required");
        return -1;
    }
    x->req.name = (char *)sds;
    x->one_path[0] = (char *)path;
    x->req.paths = x->one_path;
    x->req.n_paths = 1;
    if (query_flag(r, "force", &x->req.force, err, len) < 0)
        return -1;
    x->info = x->req.force ? "forgotten; its copies are rebuilt from the others"
                           : "draining: its copies move to other devices";
    return 0;
}

/* A takeover is answered only once the SDSs fence the old writer, as the
 * CLI's (rest_api.c); the MDM refuses one of a read-only or shared
 * mapping, with the CLI's words. */
/* A takeover, or a mapping made read-only, waits for the SDSs (rest_api.c). */
static int b_map(struct rest_ctx *x, struct http_request *r, char *err, size_t len)
{
    (void)r, (void)err, (void)len;
    x->wait_sds = x->req.takeover    ? REST_WAIT_TAKEOVER
                  : x->req.read_only ? REST_WAIT_READ_ONLY
                                     : REST_WAIT_NONE;
    return 0;
}

/* An unmap waits until the SDSs refuse the SDC (rest_api.c), as the CLI's. */
static int b_unmap(struct rest_ctx *x, struct http_request *r, char *err, size_t len)
{
    (void)r, (void)err, (void)len;
    x->wait_sds = REST_WAIT_UNMAP;
    return 0;
}

static int b_snapshot_list(struct rest_ctx *x, struct http_request *r, char *err, size_t len)
{
    (void)err, (void)len;
    x->req.volume = (char *)http_query(r, "volume");
    return 0;
}

/* A string field the body gave (an absent one is the empty string). */
static int given(const char *s)
{
    return s && s[0];
}

/* {"volume": V, "name": S}, or {"group": G, "volumes": [...]} (the name
 * is then the group's, as `cairn snapshot create --group` makes it). */
static int b_snapshot_create(struct rest_ctx *x, struct http_request *r, char *err, size_t len)
{
    (void)r;
    if (given(x->req.group) && given(x->req.volume)) {
        rest_errf(err, len, "give either 'volume' and 'name', or 'group' and 'volumes'");
        return -1;
    }
    if (given(x->req.group)) {
        if (!x->req.n_paths) {
            rest_errf(err, len, "missing field 'volumes'");
            return -1;
        }
        if (given(x->req.name) && strcmp(x->req.name, x->req.group)) {
            rest_errf(err, len, "a group snapshot's name is its group's ('%s')", x->req.group);
            return -1;
        }
        x->req.name = x->req.group;
        x->req.volumes = x->req.paths;
        x->req.n_volumes = x->req.n_paths;
    } else {
        if (!given(x->req.volume)) {
            rest_errf(err, len, "missing field 'volume' (or 'group' and 'volumes')");
            return -1;
        }
        if (x->req.n_paths) {
            rest_errf(err, len, "'volumes' goes with 'group'; for one volume give 'volume'");
            return -1;
        }
        if (!given(x->req.name)) {
            rest_errf(err, len, "missing field 'name'");
            return -1;
        }
        x->one_path[0] = x->req.volume;
        x->req.volume = (char *)"";
        x->req.volumes = x->one_path;
        x->req.n_volumes = 1;
    }
    x->req.paths = NULL;
    x->req.n_paths = 0;
    return 0;
}

static int b_snapshot_remove(struct rest_ctx *x, struct http_request *r, char *err, size_t len)
{
    (void)r;
    if (!strchr(x->req.volume, '@')) {
        /* the CLI's words */
        rest_errf(err, len, "name the snapshot as VOLUME@SNAPSHOT, not '%s'", x->req.volume);
        return -1;
    }
    x->info = "removed; its space is freed as the SDSs merge it";
    return 0;
}

/* POST /snapshots/VOL@SNAP/clone {"name": NEW}: the CLI's request of
 * `cairn volume clone VOL@SNAP NEW`, with its words for a plain name. */
static int b_clone(struct rest_ctx *x, struct http_request *r, char *err, size_t len)
{
    (void)r;
    if (!strchr(x->req.volume, '@')) {
        rest_errf(err, len, "clone a snapshot, VOLUME@SNAPSHOT, not '%s'", x->req.volume);
        return -1;
    }
    return 0;
}

/* POST /volumes/NAME/flatten {"rate": R}: R is bytes per second per SDS
 * (or a size string, "32M": 32 MiB/s), the CLI's --rate; absent, the
 * SDSs' default (64 MiB/s). */
static int b_flatten(struct rest_ctx *x, struct http_request *r, char *err, size_t len)
{
    (void)r;
    json_t *rate = json_object_get(x->body, "rate");
    if (rate && !json_is_null(rate) && !x->req.size) {
        rest_errf(err, len, "'rate' must be above 0 (bytes per second per SDS, or e.g. \"32M\")");
        return -1;
    }
    return 0;
}

static int b_ok(struct rest_ctx *x, struct http_request *r, char *err, size_t len)
{
    (void)r, (void)err, (void)len;
    x->info = "ok";
    return 0;
}

/* ---- the table ---- */

#define FIELDS(...) ((const struct rest_field[]){__VA_ARGS__, {NULL, 0, 0, 0}})
#define P1(a)                                                                                      \
    {                                                                                              \
        REST_REQ_OFF(a), REST_NO_PARAM                                                             \
    }
#define P2(a, b)                                                                                   \
    {                                                                                              \
        REST_REQ_OFF(a), REST_REQ_OFF(b)                                                           \
    }
#define NOP                                                                                        \
    {                                                                                              \
        REST_NO_PARAM, REST_NO_PARAM                                                               \
    }
#define OP(x) CAIRN__MGMT_OP__OP_##x

const struct rest_route rest_routes[] = {
    {"GET", API "/status", 0, NULL, NOP, NULL, 200, r_status},

    {"GET", API "/sds", 0, NULL, NOP, NULL, 200, r_sds_list},
    {"POST", API "/sds", OP(SDS_ADD),
     FIELDS({"name", REST_F_STR, 1, REST_REQ_OFF(name)},
            {"addr", REST_F_STR, 1, REST_REQ_OFF(addr)}, {"devices", REST_F_PATHS, 1, 0},
            {"fault_set", REST_F_STR, 0, REST_REQ_OFF(fault_set)},
            {"pool", REST_F_STR, 0, REST_REQ_OFF(pool)}),
     NOP, b_sds_add, 201, r_sds},
    {"GET", API "/sds/*", 0, NULL, P1(name), NULL, 200, r_sds},
    {"DELETE", API "/sds/*", OP(SDS_REMOVE), NULL, P1(name), b_sds_remove, 200, NULL},
    {"POST", API "/sds/*/maintenance", OP(MAINTENANCE_ENTER), FIELDS({"enter", REST_F_OTHER, 1, 0}),
     P1(name), b_maintenance, 200, r_sds},

    {"GET", API "/devices", 0, NULL, NOP, NULL, 200, r_device_list},
    {"POST", API "/devices", OP(DEVICE_ADD),
     FIELDS({"sds", REST_F_STR, 1, REST_REQ_OFF(name)}, {"path", REST_F_PATH, 1, 0},
            {"pool", REST_F_STR, 0, REST_REQ_OFF(pool)}),
     NOP, NULL, 201, r_device},
    {"DELETE", API "/devices", OP(DEVICE_REMOVE), NULL, NOP, b_device_remove, 200, NULL},

    {"GET", API "/fault-sets", 0, NULL, NOP, NULL, 200, r_fault_set_list},
    {"POST", API "/fault-sets", OP(FAULT_SET_ADD),
     FIELDS({"name", REST_F_STR, 1, REST_REQ_OFF(fault_set)}), NOP, NULL, 201, r_fault_set},
    {"GET", API "/fault-sets/*", 0, NULL, P1(fault_set), NULL, 200, r_fault_set},
    {"DELETE", API "/fault-sets/*", OP(FAULT_SET_REMOVE), NULL, P1(fault_set), b_ok, 200, NULL},

    {"GET", API "/pools", 0, NULL, NOP, NULL, 200, r_pool_list},
    {"POST", API "/pools", OP(POOL_CREATE),
     FIELDS({"name", REST_F_STR, 1, REST_REQ_OFF(pool)},
            {"copies", REST_F_U32, 0, REST_REQ_OFF(copies)},
            {"pgs", REST_F_U32, 0, REST_REQ_OFF(pg_count)},
            {"overcommit_pct", REST_F_U32, 0, REST_REQ_OFF(overcommit_pct)}),
     NOP, NULL, 201, r_pool},
    {"GET", API "/pools/*", 0, NULL, P1(pool), NULL, 200, r_pool},
    {"PATCH", API "/pools/*", OP(POOL_SET),
     FIELDS({"overcommit_pct", REST_F_U32, 1, REST_REQ_OFF(overcommit_pct)}), P1(pool), NULL, 200,
     r_pool},

    {"GET", API "/volumes", 0, NULL, NOP, NULL, 200, r_volume_list},
    {"POST", API "/volumes", OP(VOLUME_CREATE),
     FIELDS({"name", REST_F_STR, 1, REST_REQ_OFF(volume)},
            {"size", REST_F_SIZE, 1, REST_REQ_OFF(size)},
            {"pool", REST_F_STR, 0, REST_REQ_OFF(pool)},
            {"thick", REST_F_BOOL, 0, REST_REQ_OFF(thick)}),
     NOP, NULL, 201, r_volume},
    {"GET", API "/volumes/*", 0, NULL, P1(volume), NULL, 200, r_volume},
    {"PATCH", API "/volumes/*", OP(VOLUME_GROW),
     FIELDS({"size", REST_F_SIZE, 1, REST_REQ_OFF(size)}), P1(volume), NULL, 200, r_volume},
    {"DELETE", API "/volumes/*", OP(VOLUME_REMOVE), NULL, P1(volume), b_ok, 200, NULL},

    {"POST", API "/volumes/*/revert", OP(VOLUME_REVERT),
     FIELDS({"to", REST_F_STR, 1, REST_REQ_OFF(name)}), P1(volume), NULL, 200, r_volume},
    {"POST", API "/volumes/*/flatten", OP(VOLUME_FLATTEN),
     FIELDS({"rate", REST_F_SIZE, 0, REST_REQ_OFF(size)}), P1(volume), b_flatten, 200, r_volume},

    {"GET", API "/snapshots", 0, NULL, NOP, b_snapshot_list, 200, r_snapshot_list},
    {"POST", API "/snapshots", OP(SNAPSHOT_CREATE),
     FIELDS({"volume", REST_F_STR, 0, REST_REQ_OFF(volume)},
            {"name", REST_F_STR, 0, REST_REQ_OFF(name)},
            {"group", REST_F_STR, 0, REST_REQ_OFF(group)}, {"volumes", REST_F_PATHS, 0, 0}),
     NOP, b_snapshot_create, 201, r_snapshot_created},
    {"GET", API "/snapshots/*", 0, NULL, P1(volume), NULL, 200, r_snapshot},
    {"DELETE", API "/snapshots/*", OP(SNAPSHOT_REMOVE), NULL, P1(volume), b_snapshot_remove, 200,
     NULL},
    {"POST", API "/snapshots/*/clone", OP(VOLUME_CLONE),
     FIELDS({"name", REST_F_STR, 1, REST_REQ_OFF(name)}), P1(volume), b_clone, 201, r_clone},

    {"GET", API "/sdcs", 0, NULL, NOP, NULL, 200, r_sdc_list},
    {"GET", API "/sdcs/*", 0, NULL, P1(sdc), NULL, 200, r_sdc},
    {"POST", API "/sdcs/*/approve", OP(SDC_APPROVE), NULL, P1(sdc), NULL, 200, r_sdc},

    {"GET", API "/mappings", 0, NULL, NOP, NULL, 200, r_mapping_list},
    {"POST", API "/mappings", OP(MAP),
     FIELDS({"volume", REST_F_STR, 1, REST_REQ_OFF(volume)},
            {"sdc", REST_F_STR, 1, REST_REQ_OFF(sdc)},
            {"read_only", REST_F_BOOL, 0, REST_REQ_OFF(read_only)},
            {"access", REST_F_STR, 0, REST_REQ_OFF(access)},
            {"takeover", REST_F_BOOL, 0, REST_REQ_OFF(takeover)}),
     NOP, b_map, 201, r_mapping},
    {"GET", API "/mappings/*/*", 0, NULL, P2(volume, sdc), NULL, 200, r_mapping},
    {"DELETE", API "/mappings/*/*", OP(UNMAP), NULL, P2(volume, sdc), b_unmap, 200, NULL},

    {"GET", API "/mdms", 0, NULL, NOP, NULL, 200, r_mdm_list},
};

const size_t rest_n_routes = ARRAY_SIZE(rest_routes);
