/* registry.c: the schema registry over the generated table. */
#include <assert.h>
#include <string.h>

#include "mesh_schemas.h"
#include "schema_table.h"

#define TABLE_LEN (sizeof(schema_table) / sizeof(schema_table[0]))

const ProtobufCMessageDescriptor *
mesh_schema_find(const char *full_name)
{
	if (full_name == NULL) {
		return NULL;
	}
	if (full_name[0] == '.') {
		full_name++;
	}
	/* A few dozen messages: a scan costs less than keeping an index. */
	for (size_t i = 0; i < TABLE_LEN; i++) {
		if (strcmp(schema_table[i]->name, full_name) == 0) {
			return schema_table[i];
		}
	}
	return NULL;
}

size_t
mesh_schema_count(void)
{
	return TABLE_LEN;
}

const ProtobufCMessageDescriptor *
mesh_schema_at(size_t i)
{
	assert(i < TABLE_LEN);
	return schema_table[i];
}
