// memcached's meta commands (protocol.txt, "Meta Commands"): mg, ms, md, ma,
// mn, me. Called by the text parser once it has a complete command line.
//
// Thread-safety: as proto_text.
#ifndef FTM_SRC_PROTO_META_H_
#define FTM_SRC_PROTO_META_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "src/proto_text.h"
#include "src/session.h"

namespace ftm {

// Is `line` (a command line without "\r\n") a meta command this module
// handles? True for "mg", "ms", "md", "ma", "mn", "me" followed by a space or
// the end of the line.
bool is_meta_command(std::string_view line);

// Runs one meta command. `line` is the command line without its "\r\n";
// `rest` is what follows the line's "\r\n" in the read buffer (ms reads its
// data block from it). Returns a ProtoResult whose `consumed` counts only the
// bytes taken from `rest` (0 for everything but ms); if ms's data block is
// not complete yet, returns need = bytes of `rest` required and the caller
// retries later with the same line. close/yielded as for text_process.
ProtoResult meta_process(Session& session, std::string_view line, std::string_view rest,
                         std::string& out);

}  // namespace ftm

#endif  // FTM_SRC_PROTO_META_H_
