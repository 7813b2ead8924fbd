/* records.c: the store of subscription records (see internal.h): the
 * key-value bucket MESH_SUBSCRIPTIONS, a record a key "TOPIC.HEX". Below
 * both topics (a deleted topic's records go with it) and subscriptions
 * (what a record says). */
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "mesh/clock.h"

#define MAX_RECORD (300 * 1024) /* a 256 KiB policy and the rest */

static mesh_err
kv_bucket(struct mesh_conn *c, const char *bucket, uint8_t history,
          int32_t max_value, int64_t max_age_ns, bool create, const char *noun,
          kvStore **kv)
{
	int64_t until = mesh_mono_ms() + 10000;
	kvConfig cfg;
	natsStatus s;

	/* Programs starting together on a new cluster (routers, services)
	 * race to make the bucket, and a cluster that has just elected its
	 * meta leader may let a request time out: look again, for a while,
	 * before failing the caller's start. */
	for (;;) {
		s = js_KeyValue(kv, mesh_conn_js(c), bucket);
		if (s == NATS_NOT_FOUND && !create) {
			return mesh_err_set(MESH_ENOTFOUND,
			                    "%s bucket %s: does not exist",
			                    noun, bucket);
		}
		if (s == NATS_NOT_FOUND) {
			kvConfig_Init(&cfg);
			cfg.Bucket = bucket;
			cfg.History = history;
			cfg.MaxValueSize = max_value;
			cfg.TTL = max_age_ns;
			cfg.StorageType = js_FileStorage;
			cfg.Replicas = mesh_conn_replicas(c);
			s = js_CreateKeyValue(kv, mesh_conn_js(c), &cfg);
		}
		if (s == NATS_OK || mesh_mono_ms() >= until ||
		    s == NATS_CONNECTION_CLOSED || s == NATS_NOT_PERMITTED) {
			break;
		}
		nats_Sleep(200);
	}
	if (s != NATS_OK) {
		return mesh_err_nats(s, 0, "%s bucket %s", noun, bucket);
	}
	return MESH_OK;
}

mesh_err
mesh__kv_bucket(struct mesh_conn *c, const char *bucket, int32_t max_value,
                int64_t max_age_ns, bool create, const char *noun,
                kvStore **kv)
{
	return kv_bucket(c, bucket, 1, max_value, max_age_ns, create, noun,
	                 kv);
}

mesh_err
mesh__kv_bucket_history(struct mesh_conn *c, const char *bucket,
                        uint8_t history, int32_t max_value, bool create,
                        const char *noun, kvStore **kv)
{
	return kv_bucket(c, bucket, history, max_value, 0, create, noun, kv);
}

mesh_err
mesh__records_bucket(struct mesh_conn *c, kvStore **kv)
{
	return mesh__kv_bucket(c, MESH__RECORDS_BUCKET, MAX_RECORD, 0, true,
	                       "subscriptions", kv);
}

/* Every key of the bucket. */
mesh_err
mesh__records_keys(kvStore *kv, kvKeysList *keys, size_t *n)
{
	natsStatus st = kvStore_Keys(keys, kv, NULL);

	if (st == NATS_NOT_FOUND) {
		memset(keys, 0, sizeof(*keys));
		*n = 0;
		return MESH_OK;
	}
	if (st != NATS_OK) {
		return mesh_err_nats(st, 0, "listing subscriptions");
	}
	*n = (size_t)keys->Count;
	return MESH_OK;
}

/* Whether key "T.HEX" belongs to topic T. */
bool
mesh__records_of_topic(const char *key, const char *topic)
{
	size_t tl = strlen(topic);

	return strncmp(key, topic, tl) == 0 && key[tl] == '.' &&
	       strchr(key + tl + 1, '.') == NULL;
}

mesh_err
mesh__records_forget_topic(struct mesh_conn *c, const char *topic)
{
	kvKeysList keys;
	kvStore *kv = NULL;
	size_t nk = 0;
	mesh_err err;

	if ((err = mesh__records_bucket(c, &kv)) != MESH_OK) {
		return err;
	}
	if ((err = mesh__records_keys(kv, &keys, &nk)) == MESH_OK) {
		for (size_t i = 0; i < nk; i++) {
			if (mesh__records_of_topic(keys.Keys[i], topic)) {
				kvStore_Delete(kv, keys.Keys[i]);
			}
		}
		if (nk > 0) {
			kvKeysList_Destroy(&keys);
		}
	}
	kvStore_Destroy(kv);
	return err;
}

mesh_err
mesh__records_body_policy(struct mesh_conn *c, const char *topic, char *id,
                          size_t size)
{
	kvKeysList keys;
	kvStore *kv = NULL;
	size_t nk = 0;
	mesh_err err;

	if ((err = mesh__records_bucket(c, &kv)) != MESH_OK) {
		return err;
	}
	if ((err = mesh__records_keys(kv, &keys, &nk)) == MESH_OK) {
		for (size_t i = 0; i < nk && err == MESH_OK; i++) {
			kvEntry *e = NULL;
			json_t *j;
			if (!mesh__records_of_topic(keys.Keys[i], topic) ||
			    kvStore_Get(&e, kv, keys.Keys[i]) != NATS_OK) {
				continue;
			}
			j = json_loadb(kvEntry_ValueString(e),
			               (size_t)kvEntry_ValueLen(e), 0, NULL);
			kvEntry_Destroy(e);
			if (json_object_get(j, "filter_policy") != NULL &&
			    json_string_value(json_object_get(
			            j, "filter_scope")) != NULL &&
			    strcmp(json_string_value(
			                   json_object_get(j, "filter_scope")),
			           "MessageBody") == 0) {
				snprintf(id, size, "%s",
				         json_string_value(
				                 json_object_get(j, "id")));
				err = MESH_EEXIST;
			}
			json_decref(j);
		}
		if (nk > 0) {
			kvKeysList_Destroy(&keys);
		}
	}
	kvStore_Destroy(kv);
	return err;
}
