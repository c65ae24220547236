/* Types of the generated event-kind table (kinds.h). */
#ifndef FF_TYPES_H
#define FF_TYPES_H

#include <stddef.h>

typedef enum {
    FT_DEC, FT_DEC_OPT, FT_STR, FT_STR_OPT, FT_INT, FT_INT_OPT, FT_BOOL_OPT, FT_LEVELS, FT_ORDERS, FT_MAP
} ff_field_type;

typedef struct {
    const char *name;
    ff_field_type type;
} ff_field;

typedef struct {
    const char *kind;
    const char *channel;
    const ff_field *fields;
    size_t nfields;
    const char *topic_keys[3];
    size_t ntopic_keys;
    int scalar;
} ff_kind;

#endif
