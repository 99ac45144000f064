import Foundation

/// Access keys for signing. `description` never shows the secret or the session token.
public struct S3Credentials: Sendable, Hashable, CustomStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    public var description: String {
        "S3Credentials(accessKeyID: \(accessKeyID), secret: <redacted>\(sessionToken == nil ? "" : ", session token: <redacted>"))"
    }
}

/// AWS Signature Version 4 (header form), as a pure value: the same inputs always give the same
/// canonical request, string to sign and signature, which the tests compare with AWS's
/// published vectors.
///
/// The canonical URI is the request path percent-encoded once, `/` kept, with no dot-segment
/// normalization (S3's rules). Query names and values are given unencoded and encoded here.
public struct SigV4Signer: Sendable {
    public var region: String
    public var service: String

    public init(region: String, service: String = "s3") {
        self.region = region
        self.service = service
    }

    /// The inputs of one signature.
    public struct Request: Sendable {
        public var method: String
        /// The unencoded path, starting with `/`.
        public var path: String
        /// Unencoded query parameters (a parameter without value has value "").
        public var query: [(String, String)]
        /// The headers to sign (must include `host` and `x-amz-date`).
        public var headers: [(String, String)]
        /// Hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
        public var payloadHash: String

        public init(method: String, path: String, query: [(String, String)] = [], headers: [(String, String)], payloadHash: String) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.payloadHash = payloadHash
        }
    }

    /// RFC 3986 percent-encoding of everything but unreserved characters (and `/` if asked).
    public static func uriEncode(_ text: String, keepSlash: Bool) -> String {
        var out = ""
        for byte in text.utf8 {
            let unreserved = (byte >= 65 && byte <= 90) || (byte >= 97 && byte <= 122) || (byte >= 48 && byte <= 57)
                || byte == 45 || byte == 46 || byte == 95 || byte == 126
            if unreserved || (keepSlash && byte == 47) {
                out.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }

    /// `name=value&...` sorted by encoded name then value.
    public static func canonicalQuery(_ query: [(String, String)]) -> String {
        query.map { (uriEncode($0.0, keepSlash: false), uriEncode($0.1, keepSlash: false)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// The canonical request and the `;`-joined signed header names.
    public func canonicalRequest(_ request: Request) -> (canonical: String, signedHeaders: String) {
        var merged: [String: [String]] = [:]
        for (name, value) in request.headers {
            let trimmed = value.trimmingCharacters(in: .whitespaces)
            let collapsed = trimmed.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            merged[name.lowercased(), default: []].append(collapsed)
        }
        let names = merged.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")
        let canonical = [
            request.method,
            SigV4Signer.uriEncode(request.path, keepSlash: true),
            SigV4Signer.canonicalQuery(request.query),
            canonicalHeaders,
            signedHeaders,
            request.payloadHash,
        ].joined(separator: "\n")
        return (canonical, signedHeaders)
    }

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
    public static func amzDate(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ v: Int32, _ w: Int) -> String { String(v).leftPadded(to: w) }
        return "\(pad(parts.tm_year + 1900, 4))\(pad(parts.tm_mon + 1, 2))\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2))\(pad(parts.tm_min, 2))\(pad(parts.tm_sec, 2))Z"
    }

    public func scope(amzDate: String) -> String { "\(amzDate.prefix(8))/\(region)/\(service)/aws4_request" }

    public func stringToSign(canonicalRequest: String, amzDate: String) -> String {
        "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope(amzDate: amzDate))\n\(Digest.hex(Digest.sha256(Array(canonicalRequest.utf8))))"
    }

    public func signature(stringToSign: String, amzDate: String, secretAccessKey: String) -> String {
        var key = Digest.hmacSHA256(key: Array("AWS4\(secretAccessKey)".utf8), Array(amzDate.prefix(8).utf8))
        key = Digest.hmacSHA256(key: key, Array(region.utf8))
        key = Digest.hmacSHA256(key: key, Array(service.utf8))
        key = Digest.hmacSHA256(key: key, Array("aws4_request".utf8))
        return Digest.hex(Digest.hmacSHA256(key: key, Array(stringToSign.utf8)))
    }

    /// The `Authorization` header value for `request` (whose headers include `x-amz-date`).
    public func authorization(_ request: Request, amzDate: String, credentials: S3Credentials) -> String {
        let (canonical, signedHeaders) = canonicalRequest(request)
        let toSign = stringToSign(canonicalRequest: canonical, amzDate: amzDate)
        let sig = signature(stringToSign: toSign, amzDate: amzDate, secretAccessKey: credentials.secretAccessKey)
        return "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope(amzDate: amzDate)), SignedHeaders=\(signedHeaders), Signature=\(sig)"
    }
}
