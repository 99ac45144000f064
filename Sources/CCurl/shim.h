#include <curl/curl.h>

// curl_easy_setopt, curl_easy_getinfo and curl_multi_setopt are variadic (and type-checking
// macros under GCC/Clang), which Swift cannot call; these typed wrappers can be.
static inline CURLcode floe_curl_easy_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode floe_curl_easy_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode floe_curl_easy_setopt_string(CURL *handle, CURLoption option, const char *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode floe_curl_easy_setopt_pointer(CURL *handle, CURLoption option, void *value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode floe_curl_easy_setopt_slist(CURL *handle, CURLoption option, struct curl_slist *value) {
    return curl_easy_setopt(handle, option, value);
}
typedef size_t (*floe_curl_data_callback)(char *buffer, size_t size, size_t count, void *context);
static inline CURLcode floe_curl_easy_setopt_callback(CURL *handle, CURLoption option, floe_curl_data_callback value) {
    return curl_easy_setopt(handle, option, value);
}
static inline CURLcode floe_curl_easy_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLcode floe_curl_easy_getinfo_pointer(CURL *handle, CURLINFO info, void **value) {
    return curl_easy_getinfo(handle, info, value);
}
static inline CURLMcode floe_curl_multi_setopt_long(CURLM *handle, CURLMoption option, long value) {
    return curl_multi_setopt(handle, option, value);
}
typedef int (*floe_curl_seek_callback)(void *context, curl_off_t offset, int origin);
static inline CURLcode floe_curl_easy_setopt_seek_callback(CURL *handle, CURLoption option, floe_curl_seek_callback value) {
    return curl_easy_setopt(handle, option, value);
}
// A PEM blob (CA bundle, client certificate or key) that libcurl copies before returning.
static inline CURLcode floe_curl_easy_setopt_blob(CURL *handle, CURLoption option, const void *data, size_t length) {
    struct curl_blob blob = { (void *)data, length, CURL_BLOB_COPY };
    return curl_easy_setopt(handle, option, &blob);
}
