#ifndef FLOE_SHIMS_H
#define FLOE_SHIMS_H
#include <stddef.h>
#include <stdint.h>

/// Extends a CRC32C (Castagnoli) over `length` bytes. `crc` is the value returned by a previous
/// call, or 0 to start. Uses the CPU's SSE4.2 CRC32 instruction when present, a table otherwise.
uint32_t floe_crc32c_update(uint32_t crc, const void *data, size_t length);

/// 1 when floe_crc32c_update runs on the CPU's CRC32 instruction, 0 when it uses the table.
int floe_crc32c_is_hardware(void);

/// The table implementation, always; exposed so tests can check both paths agree.
uint32_t floe_crc32c_update_software(uint32_t crc, const void *data, size_t length);

#endif
#include "floe_net.h"
#include "floe_sched.h"
#include "floe_io.h"
