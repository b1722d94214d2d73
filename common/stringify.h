/*
 * PROFILE_STR(LIMIT): a numeric constant as a string literal, so that a message or a script
 * quotes the limit the code checks rather than a copy of it.
 */
#ifndef PROFILE_COMMON_STRINGIFY_H
#define PROFILE_COMMON_STRINGIFY_H

#define PROFILE_STR_(x) #x
#define PROFILE_STR(x) PROFILE_STR_(x)

#endif
