#include "rollsafe/journal/journal.hpp"

#include <openssl/evp.h>

#include <stdexcept>

namespace rollsafe::journal {

std::optional<std::string> ParseIdempotencyKey(std::string_view header, std::string* error) {
    std::string_view v = header;
    std::string unescaped;
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
        // A structured-field string (RFC 8941 3.3.3): only \" and \\ are escapes.
        v = v.substr(1, v.size() - 2);
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (v[i] == '\\') {
                if (i + 1 == v.size() || (v[i + 1] != '"' && v[i + 1] != '\\')) {
                    *error = "Idempotency-Key: a quoted key may escape only \\\" and \\\\";
                    return std::nullopt;
                }
                ++i;
            } else if (v[i] == '"') {
                *error = "Idempotency-Key: a quoted key must escape '\"' as '\\\"'";
                return std::nullopt;
            }
            unescaped += v[i];
        }
        v = unescaped;
    }
    if (v.empty()) {
        *error = "Idempotency-Key must not be empty";
        return std::nullopt;
    }
    if (v.size() > kMaxKeyLength) {
        *error = "Idempotency-Key is " + std::to_string(v.size()) + " characters; at most " +
                 std::to_string(kMaxKeyLength) + " are allowed";
        return std::nullopt;
    }
    for (std::size_t i = 0; i < v.size(); ++i) {
        const auto c = static_cast<unsigned char>(v[i]);
        if (c < 0x21 || c > 0x7E) {
            *error = "Idempotency-Key may contain only visible ASCII characters; byte " +
                     std::to_string(i) + " is not one";
            return std::nullopt;
        }
    }
    return std::string(v);
}

std::string Sha256Hex(std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1)
        throw std::runtime_error("SHA-256 failed");
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out(len * 2, '0');
    for (unsigned int i = 0; i < len; ++i) {
        out[2 * i] = kHex[md[i] >> 4];
        out[2 * i + 1] = kHex[md[i] & 0xF];
    }
    return out;
}

std::string PrincipalFor(std::optional<std::string_view> authorization) {
    if (!authorization || authorization->empty()) return "anonymous";
    return "bearer:" + Sha256Hex(*authorization).substr(0, 32);
}

std::string Fingerprint(std::string_view method, std::string_view path, std::string_view body) {
    // Length prefixes keep ("POST", "/a\nb") and ("POST\n/a", "b") apart.
    std::string in;
    in.reserve(method.size() + path.size() + body.size() + 32);
    for (std::string_view part : {method, path, body}) {
        in += std::to_string(part.size());
        in += ':';
        in += part;
        in += '\n';
    }
    return Sha256Hex(in);
}

ClaimResult Claim(store::Tx& tx, const store::Operation& fresh, std::int64_t now_ms) {
    ClaimResult r;
    if (tx.InsertOperation(fresh)) {
        r.decision = Decision::kExecute;
        r.op = fresh;
        return r;
    }
    auto existing = tx.GetOperation(fresh.principal, fresh.key);
    if (!existing)  // deleted by retention between the two statements: cannot happen in one tx
        throw store::Error(store::ErrorKind::kTransient, "journal row vanished during claim");
    return Decide(tx, *existing, fresh, now_ms);
}

ClaimResult Decide(store::Tx& tx, const store::Operation& existing, const store::Operation& fresh,
                   std::int64_t now_ms) {
    ClaimResult r;
    r.op = existing;
    if (existing.fingerprint != fresh.fingerprint) {
        r.decision = Decision::kMismatch;
        return r;
    }
    if (existing.state == "completed") {
        r.decision = Decision::kReplay;
        return r;
    }
    if (existing.lease_until_ms > now_ms) {
        r.decision = Decision::kInProgress;
        r.retry_after_s =
            std::max<std::int64_t>(1, (existing.lease_until_ms - now_ms + 999) / 1000);
        return r;
    }
    if (!tx.TakeOver(fresh.principal, fresh.key, fresh.owner, fresh.lease_until_ms, now_ms)) {
        r.decision = Decision::kInProgress;
        r.retry_after_s = 1;
        return r;
    }
    r.decision = Decision::kResume;
    r.op.owner = fresh.owner;
    r.op.lease_until_ms = fresh.lease_until_ms;
    return r;
}

}  // namespace rollsafe::journal
