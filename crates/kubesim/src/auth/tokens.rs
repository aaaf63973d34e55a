//! ServiceAccount tokens as the real API server issues and checks them: an RS256 key, bound tokens
//! from the TokenRequest subresource, legacy tokens in `kubernetes.io/service-account-token` Secrets,
//! and the bearer-token authenticator (admin token first, then both JWT flavours).
//!
//! A bound token is valid only while its ServiceAccount exists with the uid in the token, and while its
//! bound Pod/Secret/Node (if any) exists with the uid in the token. A legacy token is valid only while
//! its Secret still holds exactly that token and the ServiceAccount still has the uid in the token.
//!
//! As on a real API server, "revoked" is not "refused at once": times are checked with a clock leeway
//! ([`Ctx::token_leeway_seconds`], 60 s by default, go-jose's), and a successful authentication is
//! remembered for [`Ctx::auth_cache_ttl`] (10 s by default) even if the ServiceAccount or the bound
//! object is deleted meanwhile (see [`AuthCache`]). A TokenRequest longer than
//! [`Ctx::max_token_expiration_seconds`] is shortened to it, with a warning.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::PrivateKey as RsaPrivateKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, LineEnding};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

use super::{Ctx, UserInfo, go_quote, go_quote_list, service_account_username};
use crate::errors::{ApiError, ApiResult};
use crate::resources::GroupResource;
use crate::store::Store;

/// Issuer of bound tokens, and the API server's only audience (`--api-audiences` defaults to it).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Issuer of legacy Secret-based tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// `spec.expirationSeconds` of a TokenRequest that gives none.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Largest `spec.expirationSeconds` a TokenRequest may ask for (2^32, as upstream validation says).
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// Secret type of legacy ServiceAccount tokens.
pub const SA_TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";
/// Annotation naming the ServiceAccount of a legacy token Secret.
pub const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// Annotation holding the uid of the ServiceAccount of a legacy token Secret.
pub const SA_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
/// Label by which Kubernetes marks a legacy token as no longer accepted.
const LEGACY_INVALID_SINCE_LABEL: &str = "kubernetes.io/legacy-token-invalid-since";
/// WebSocket subprotocol prefix carrying a bearer token for clients that cannot set headers (browsers).
const WS_PROTOCOL_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";
const TOKEN_REQUEST_GROUP: &str = "authentication.k8s.io";

fn gr(resource: &str) -> GroupResource {
    GroupResource::new("", resource)
}

/// Why a token was not accepted, worded like the real authenticators. Never contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(String);

impl AuthError {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }

    fn invalid_bearer() -> Self {
        Self::new("invalid bearer token")
    }

    fn invalidated() -> Self {
        Self::new("service account token has been invalidated")
    }
}

/// A `{name, uid}` reference inside the `kubernetes.io` claim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Object name.
    #[serde(default)]
    pub name: String,
    /// Object uid.
    #[serde(default)]
    pub uid: String,
}

/// The private `kubernetes.io` claim of a bound token. Fields are in alphabetical order because the
/// real issuer serialises claims through a map, which sorts keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    /// Namespace of the ServiceAccount.
    pub namespace: String,
    /// Node the bound Pod runs on, or the bound Node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
    /// Bound Pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    /// Bound Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    /// The ServiceAccount.
    pub serviceaccount: ObjectRef,
}

/// The claims of a bound ServiceAccount token, laid out as the real API server writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Audiences.
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Issuer ([`ISSUER`]).
    pub iss: String,
    /// Unique token id (the credential id of audit logs).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    /// Namespace, ServiceAccount and bound object.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
    /// Not before.
    pub nbf: i64,
    /// `system:serviceaccount:NS:NAME`.
    pub sub: String,
}

/// The claims of a legacy Secret-based token (no audience, no expiry).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LegacyClaims {
    #[serde(default)]
    iss: String,
    #[serde(default, rename = "kubernetes.io/serviceaccount/namespace")]
    namespace: String,
    #[serde(default, rename = "kubernetes.io/serviceaccount/secret.name")]
    secret_name: String,
    #[serde(default, rename = "kubernetes.io/serviceaccount/service-account.name")]
    sa_name: String,
    #[serde(default, rename = "kubernetes.io/serviceaccount/service-account.uid")]
    sa_uid: String,
    #[serde(default)]
    sub: String,
}

/// `aud` may be one string or a list (RFC 7519); we always write a list, as Kubernetes does.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

/// How many tokens whose signature checked out are remembered. Beyond it the memory starts afresh.
const VERIFIED_CACHE_ENTRIES: usize = 8192;
/// How many successful authentications [`AuthCache`] remembers at most: upstream's cache is 32 stripes
/// of 128 LRU entries (`cached_token_authenticator.go`), 4096 in all.
const AUTH_CACHE_ENTRIES: usize = 4096;

/// The success cache in front of the token authenticators, as kube-apiserver's
/// `staging/src/k8s.io/apiserver/pkg/authentication/token/cache/cached_token_authenticator.go`:
///
/// - keyed by an HMAC (with a random per-process key) over the token and the audiences the request is
///   authenticated for, so no token is kept in memory and a TokenReview for other audiences is a
///   different entry;
/// - only successes are stored (`--token-auth-cache-ttl`'s failure TTL is 0 by default), each for the
///   whole success TTL from when it was stored: upstream does not shorten it to the token's `exp`, so a
///   token may be accepted up to the TTL past its expiry plus leeway, and up to the TTL after its
///   ServiceAccount or bound object is deleted;
/// - bounded: expired entries are dropped when the cache is full, then the entry closest to expiry
///   (with a constant TTL, the oldest: what upstream's LRU drops too).
pub struct AuthCache {
    key: ring::hmac::Key,
    entries: std::sync::Mutex<std::collections::HashMap<Vec<u8>, CachedAuth>>,
}

/// One remembered success: who the token authenticated as, for which audiences, until when.
#[derive(Clone)]
struct CachedAuth {
    user: UserInfo,
    audiences: Vec<String>,
    expires_at_ms: i64,
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCache")
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for AuthCache {
    fn default() -> Self {
        Self::new()
    }
}

impl AuthCache {
    /// An empty cache with a fresh random key.
    pub fn new() -> Self {
        Self {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &rand::random::<[u8; 32]>()),
            entries: Default::default(),
        }
    }

    /// How many entries are held (expired ones included until they are dropped).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<Vec<u8>, CachedAuth>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Length-prefixed fields, so `("ab", ["c"])` and `("a", ["bc"])` never share a key.
    fn key_for(&self, token: &str, audiences: &[String]) -> Vec<u8> {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        let mut field = |bytes: &[u8]| {
            ctx.update(&(bytes.len() as u64).to_be_bytes());
            ctx.update(bytes);
        };
        field(token.as_bytes());
        field(&(audiences.len() as u64).to_be_bytes());
        for a in audiences {
            field(a.as_bytes());
        }
        ctx.sign().as_ref().to_vec()
    }

    fn get(&self, key: &[u8], now_ms: i64) -> Option<(UserInfo, Vec<String>)> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some(hit) if hit.expires_at_ms > now_ms => Some((hit.user.clone(), hit.audiences.clone())),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&self, key: Vec<u8>, user: &UserInfo, audiences: &[String], expires_at_ms: i64, now_ms: i64) {
        let mut entries = self.lock();
        if entries.len() >= AUTH_CACHE_ENTRIES && !entries.contains_key(&key) {
            entries.retain(|_, e| e.expires_at_ms > now_ms);
            if entries.len() >= AUTH_CACHE_ENTRIES
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.expires_at_ms)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            key,
            CachedAuth {
                user: user.clone(),
                audiences: audiences.to_vec(),
                expires_at_ms,
            },
        );
    }
}

/// Signs and verifies ServiceAccount tokens (RS256).
///
/// Signing uses ring (an RSA-2048 signature in pure-Rust `rsa` costs milliseconds, and kubesim shares
/// the machine with what it tests); verification uses jsonwebtoken, so every token kubesim issues is
/// also checked by an independent JWT implementation when it comes back.
pub struct TokenIssuer {
    key: RsaPrivateKey,
    signer: ring::signature::RsaKeyPair,
    decoding: DecodingKey,
    kid: String,
    n: String,
    e: String,
    /// Claims of tokens whose signature was already checked, by token: a speed-up only. Just the
    /// signature check is skipped for them; times and the bound objects are still checked on every
    /// authentication that misses the [`AuthCache`], so this memory never delays a revocation.
    verified: std::sync::Mutex<std::collections::HashMap<String, Value>>,
    /// Successful authentications, remembered for [`Ctx::auth_cache_ttl`] (revocation is delayed by
    /// it, as on a real server). It lives with the issuer because both are per cluster.
    auth_cache: AuthCache,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("TokenIssuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// A fresh 2048-bit RSA key.
    pub fn generate() -> anyhow::Result<Self> {
        Self::from_key(RsaPrivateKey::new(&mut rand::rng(), 2048)?)
    }

    /// The issuer for a saved key (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY` PEM), so tokens
    /// survive a restart from a state file.
    pub fn from_private_key_pem(pem: &str) -> anyhow::Result<Self> {
        let key = match RsaPrivateKey::from_pkcs1_pem(pem) {
            Ok(k) => k,
            Err(_) => RsaPrivateKey::from_pkcs8_pem(pem)?,
        };
        Self::from_key(key)
    }

    /// The signing key as PKCS#1 PEM, for persisting it with the state.
    pub fn private_key_pem(&self) -> anyhow::Result<String> {
        Ok(self.key.to_pkcs1_pem(LineEnding::LF)?.to_string())
    }

    fn from_key(key: RsaPrivateKey) -> anyhow::Result<Self> {
        let der = key.to_pkcs1_der()?;
        let encoding = EncodingKey::from_rsa_der(der.as_bytes());
        let signer = ring::signature::RsaKeyPair::from_der(der.as_bytes())
            .map_err(|e| anyhow::anyhow!("RSA key rejected for signing: {e}"))?;
        let (n, e) = (key.n_bytes(), key.e_bytes());
        let decoding = DecodingKey::from_rsa_raw_components(&n, &e);
        // The key id is the RFC 7638 thumbprint: stable for the key, opaque to clients.
        let kid = Jwk::from_encoding_key(&encoding, Algorithm::RS256)?.thumbprint(ThumbprintHash::SHA256)?;
        let issuer = Self {
            key,
            signer,
            decoding,
            kid,
            n: URL_SAFE_NO_PAD.encode(n),
            e: URL_SAFE_NO_PAD.encode(e),
            verified: Default::default(),
            auth_cache: AuthCache::new(),
        };
        // A key that cannot sign or verify fails here, at start, never at request time (see `sign`).
        let probe = issuer.try_sign(&json!({ "iss": ISSUER }))?;
        issuer
            .decode_verified(&probe)
            .map_err(|e| anyhow::anyhow!("token key self-test failed: {e}"))?;
        Ok(issuer)
    }

    /// The `kid` header of every token.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    fn try_sign<T: Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        // Kubernetes' tokens carry only `alg` and `kid` in the header.
        let mut header = Header::new(Algorithm::RS256);
        header.typ = None;
        header.kid = Some(self.kid.clone());
        // JWS compact serialisation (RFC 7515 §7.1): the signature covers `header.payload`.
        let mut jwt = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims)?));
        let mut sig = vec![0u8; self.signer.public().modulus_len()];
        self.signer
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                jwt.as_bytes(),
                &mut sig,
            )
            .map_err(|_| anyhow::anyhow!("RSA signing failed"))?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(sig));
        Ok(jwt)
    }

    #[allow(
        clippy::expect_used,
        reason = "the key passed a signing self-test in from_key and claims are plain structs: no input can fail this"
    )]
    fn sign<T: Serialize>(&self, claims: &T) -> String {
        // Claims are plain structs (serialisation cannot fail) and the key passed a signing self-test
        // when the issuer was built, so a failure here is a broken invariant, not bad input.
        self.try_sign(claims).expect("signing with a self-tested RSA key")
    }

    /// A bound token for ServiceAccount `namespace/sa_name` with uid `sa_uid`, valid for
    /// `expiration_seconds` from now, optionally bound to an object `(kind, name, uid)` whose kind is
    /// `Pod`, `Secret` or `Node` (other kinds are not recorded; [`token_request`] refuses them first).
    /// Returns the token and its expiry (seconds since the epoch).
    pub fn issue(
        &self,
        namespace: &str,
        sa_name: &str,
        sa_uid: &str,
        audiences: &[String],
        expiration_seconds: i64,
        bound: Option<(&str, &str, &str)>,
    ) -> (String, i64) {
        let mut k = KubernetesClaims {
            namespace: namespace.into(),
            serviceaccount: ObjectRef {
                name: sa_name.into(),
                uid: sa_uid.into(),
            },
            ..Default::default()
        };
        if let Some((kind, name, uid)) = bound {
            let r = Some(ObjectRef {
                name: name.into(),
                uid: uid.into(),
            });
            match kind {
                "Pod" => k.pod = r,
                "Secret" => k.secret = r,
                "Node" => k.node = r,
                _ => {}
            }
        }
        let claims = bound_claims(now_secs(), k, audiences, expiration_seconds);
        (self.sign(&claims), claims.exp)
    }

    /// The claims of a bound token signed by this key that is within its validity period, exactly (no
    /// leeway). Says nothing about whether its ServiceAccount still exists; [`authenticate_token`]
    /// checks that, with the server's leeway.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        self.verify_bound_at(token, now_millis()).ok()
    }

    /// The cache of successful authentications.
    pub fn auth_cache(&self) -> &AuthCache {
        &self.auth_cache
    }

    fn verify_bound_at(&self, token: &str, now_ms: i64) -> Result<Claims, AuthError> {
        let raw = self.decode_verified(token)?;
        if raw["iss"] != ISSUER {
            return Err(AuthError::invalid_bearer());
        }
        let c: Claims = serde_json::from_value(raw)
            .map_err(|_| AuthError::new("service account token claims could not be validated"))?;
        check_times(c.exp, c.nbf, c.iat, now_ms, 0)?;
        Ok(c)
    }

    /// A legacy, non-expiring token for the ServiceAccount of the Secret `namespace/secret_name`.
    pub fn issue_legacy(&self, namespace: &str, sa_name: &str, sa_uid: &str, secret_name: &str) -> String {
        self.sign(&LegacyClaims {
            iss: LEGACY_ISSUER.into(),
            namespace: namespace.into(),
            secret_name: secret_name.into(),
            sa_name: sa_name.into(),
            sa_uid: sa_uid.into(),
            sub: service_account_username(namespace, sa_name),
        })
    }

    /// The public key as served at `/openid/v1/jwks`.
    pub fn public_jwks(&self) -> Value {
        json!({ "keys": [{ "use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256", "n": self.n, "e": self.e }] })
    }

    /// The document served at `/.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": ISSUER,
            "jwks_uri": format!("{ISSUER}/openid/v1/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        })
    }

    /// The claims of a token whose RS256 signature is ours; no other check.
    fn decode_verified(&self, token: &str) -> Result<Value, AuthError> {
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(claims) = verified.get(token) {
            return Ok(claims.clone());
        }
        drop(verified);
        let claims = self.check_signature(token)?;
        verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= VERIFIED_CACHE_ENTRIES {
            verified.clear();
        }
        verified.insert(token.to_string(), claims.clone());
        Ok(claims)
    }

    fn check_signature(&self, token: &str) -> Result<Value, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::invalid_bearer())?;
        if header.alg != Algorithm::RS256 || header.kid.as_deref().is_some_and(|k| k != self.kid) {
            return Err(AuthError::invalid_bearer());
        }
        // Times, issuer and audiences are checked by the caller, with Kubernetes' rules and messages.
        let mut v = Validation::new(Algorithm::RS256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, &self.decoding, &v)
            .map(|d| d.claims)
            .map_err(|_| AuthError::invalid_bearer())
    }
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn bound_claims(now: i64, kubernetes: KubernetesClaims, audiences: &[String], expiration_seconds: i64) -> Claims {
    Claims {
        aud: audiences.to_vec(),
        exp: now.saturating_add(expiration_seconds),
        iat: now,
        iss: ISSUER.into(),
        jti: uuid::Uuid::new_v4().to_string(),
        sub: service_account_username(&kubernetes.namespace, &kubernetes.serviceaccount.name),
        kubernetes,
        nbf: now,
    }
}

/// go-jose's time checks (`jwt.Claims.Validate`, called from `pkg/serviceaccount/claims.go`): expired
/// once now minus the leeway is past `exp` (sub-second precision), not valid while now plus the leeway is
/// before `nbf`, never issued in the future beyond the leeway. The real server's leeway is go-jose's
/// `DefaultLeeway`, one minute.
fn check_times(exp: i64, nbf: i64, iat: i64, now_ms: i64, leeway_seconds: i64) -> Result<(), AuthError> {
    let leeway = leeway_seconds.max(0).saturating_mul(1000);
    if now_ms.saturating_sub(leeway) > exp.saturating_mul(1000) {
        return Err(AuthError::new("service account token has expired"));
    }
    if now_ms.saturating_add(leeway) < nbf.saturating_mul(1000) {
        return Err(AuthError::new("service account token is not valid yet"));
    }
    if now_ms.saturating_add(leeway) < iat.saturating_mul(1000) {
        return Err(AuthError::new("service account token is issued in the future"));
    }
    Ok(())
}

/// Whether the object is being deleted since before now minus the leeway: upstream's
/// `invalidIfDeletedBefore := nowTime.Add(-jwt.DefaultLeeway)` in `pkg/serviceaccount/claims.go`, so an
/// object whose deletion started less than the leeway ago (finalizers pending) still validates.
fn deleted_before_now(obj: &Value, now_ms: i64, leeway_seconds: i64) -> bool {
    let cutoff = now_ms.saturating_sub(leeway_seconds.max(0).saturating_mul(1000));
    obj["metadata"]["deletionTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t.timestamp_millis() < cutoff)
}

fn uid_of(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or_default()
}

/// Constant-time comparison, so response timing reveals nothing about a secret token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn intersect(token_auds: &[String], requested: &[String]) -> Vec<String> {
    token_auds.iter().filter(|a| requested.contains(a)).cloned().collect()
}

fn audience_error(token_auds: &[String], requested: &[String]) -> AuthError {
    AuthError::new(format!(
        "token audiences {} is invalid for the target audiences {}",
        go_quote_list(token_auds),
        go_quote_list(requested)
    ))
}

/// The bearer token of a request: `Authorization: Bearer X` (scheme case-insensitive), or for a
/// WebSocket upgrade without one, the `base64url.bearer.authorization.k8s.io.<base64url>` subprotocol.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<String> {
    if let Some(v) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        // Go: strings.SplitN(strings.TrimSpace(auth), " ", 3); anything but "bearer X…" is not ours.
        let mut parts = v.trim().splitn(3, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next())
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return Some(token.to_string());
        }
    }
    let upgrade = headers.get(http::header::UPGRADE).and_then(|v| v.to_str().ok());
    if !upgrade.is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket")) {
        return None;
    }
    headers
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.trim().strip_prefix(WS_PROTOCOL_PREFIX))
        .find_map(|enc| URL_SAFE_NO_PAD.decode(enc).ok().and_then(|b| String::from_utf8(b).ok()))
}

/// Authenticates a bearer token for the given audiences (the API server's own: `[ISSUER]`). Returns
/// the identity and the audiences it was accepted for.
pub fn authenticate_token(
    ctx: &Ctx<'_>,
    token: &str,
    audiences: &[String],
) -> Result<(UserInfo, Vec<String>), AuthError> {
    authenticate_token_at(ctx, token, audiences, now_millis())
}

fn authenticate_token_at(
    ctx: &Ctx<'_>,
    token: &str,
    audiences: &[String],
    now_ms: i64,
) -> Result<(UserInfo, Vec<String>), AuthError> {
    if token.is_empty() {
        return Err(AuthError::invalid_bearer());
    }
    let api_audiences = [ISSUER.to_string()];
    // A static token carries no audience: it is good for the API server's audiences only.
    if !ctx.admin_token.is_empty() && constant_time_eq(token.as_bytes(), ctx.admin_token.as_bytes()) {
        let auds = intersect(&api_audiences, audiences);
        if auds.is_empty() {
            return Err(audience_error(&api_audiences, audiences));
        }
        return Ok((UserInfo::admin(), auds));
    }
    let ttl_ms = i64::try_from(ctx.auth_cache_ttl.as_millis()).unwrap_or(i64::MAX);
    if ttl_ms <= 0 {
        return authenticate_uncached(ctx, token, audiences, now_ms);
    }
    let cache = &ctx.tokens.auth_cache;
    let key = cache.key_for(token, audiences);
    if let Some(hit) = cache.get(&key, now_ms) {
        return Ok(hit);
    }
    let (user, auds) = authenticate_uncached(ctx, token, audiences, now_ms)?;
    cache.insert(key, &user, &auds, now_ms.saturating_add(ttl_ms), now_ms);
    Ok((user, auds))
}

/// The token authenticators behind the cache: bound and legacy ServiceAccount tokens.
fn authenticate_uncached(
    ctx: &Ctx<'_>,
    token: &str,
    audiences: &[String],
    now_ms: i64,
) -> Result<(UserInfo, Vec<String>), AuthError> {
    let api_audiences = [ISSUER.to_string()];
    let raw = ctx.tokens.decode_verified(token)?;
    let iss = raw["iss"].as_str().unwrap_or_default().to_string();
    if iss != ISSUER && iss != LEGACY_ISSUER {
        return Err(AuthError::new(format!("token issuer {} is invalid", go_quote(&iss))));
    }
    // Legacy tokens have no audience and are accepted for the API server's audiences only.
    let mut token_auds: Vec<String> = match &raw["aud"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        _ => Vec::new(),
    };
    if token_auds.is_empty() {
        token_auds = api_audiences.to_vec();
    }
    let auds = intersect(&token_auds, audiences);
    if auds.is_empty() {
        return Err(audience_error(&token_auds, audiences));
    }
    let user = if iss == ISSUER {
        validate_bound(ctx.store, raw, now_ms, ctx.token_leeway_seconds)?
    } else {
        validate_legacy(ctx.store, token, raw)?
    };
    Ok((user, auds))
}

/// Upstream `serviceaccount.validator`: times, then the ServiceAccount (same uid, not deleted), then the
/// bound Secret/Pod/Node (same uid, not deleted).
fn validate_bound(store: &Store, raw: Value, now_ms: i64, leeway_seconds: i64) -> Result<UserInfo, AuthError> {
    let c: Claims = serde_json::from_value(raw)
        .map_err(|_| AuthError::new("service account token claims could not be validated"))?;
    check_times(c.exp, c.nbf, c.iat, now_ms, leeway_seconds)?;
    let k = &c.kubernetes;
    let ns = k.namespace.as_str();
    let sa_ref = &k.serviceaccount;
    let sa = store
        .get(&gr("serviceaccounts"), ns, &sa_ref.name)
        .ok_or_else(|| AuthError::new(format!("serviceaccounts {} not found", go_quote(&sa_ref.name))))?;
    if uid_of(&sa) != sa_ref.uid {
        return Err(AuthError::new(format!(
            "service account UID ({}) does not match claim ({})",
            uid_of(&sa),
            sa_ref.uid
        )));
    }
    if deleted_before_now(&sa, now_ms, leeway_seconds) {
        return Err(AuthError::new(format!(
            "service account {ns}/{} has been deleted",
            sa_ref.name
        )));
    }
    let check_bound = |resource: &str, kind: &str, r: &ObjectRef, obj_ns: &str| -> Result<(), AuthError> {
        let obj = store
            .get(&gr(resource), obj_ns, &r.name)
            .ok_or_else(AuthError::invalidated)?;
        if uid_of(&obj) != r.uid {
            return Err(AuthError::new(format!(
                "{kind} UID ({}) does not match service account {kind} ref claim ({})",
                uid_of(&obj),
                r.uid
            )));
        }
        if deleted_before_now(&obj, now_ms, leeway_seconds) {
            return Err(AuthError::invalidated());
        }
        Ok(())
    };
    if let Some(s) = &k.secret {
        check_bound("secrets", "secret", s, ns)?;
    }
    if let Some(p) = &k.pod {
        check_bound("pods", "pod", p, ns)?;
    } else if let Some(n) = &k.node {
        // For a pod-bound token the node is information only; a node-bound token depends on it.
        check_bound("nodes", "node", n, "")?;
    }
    Ok(UserInfo::service_account(ns, &sa_ref.name, &sa_ref.uid))
}

/// Upstream `legacyValidator`: the Secret named in the token still holds exactly this token, and the
/// ServiceAccount still exists with the uid in the token.
fn validate_legacy(store: &Store, token: &str, raw: Value) -> Result<UserInfo, AuthError> {
    let c: LegacyClaims = serde_json::from_value(raw).map_err(|_| AuthError::invalid_bearer())?;
    for (value, what) in [
        (&c.sub, "sub claim is missing"),
        (&c.namespace, "namespace claim is missing"),
        (&c.secret_name, "secretName claim is missing"),
        (&c.sa_name, "serviceAccountName claim is missing"),
        (&c.sa_uid, "serviceAccountUID claim is missing"),
    ] {
        if value.is_empty() {
            return Err(AuthError::new(what));
        }
    }
    if c.sub != service_account_username(&c.namespace, &c.sa_name) {
        return Err(AuthError::new("sub claim is invalid"));
    }
    let invalidated = || AuthError::new("Token has been invalidated");
    let secret = store
        .get(&gr("secrets"), &c.namespace, &c.secret_name)
        .ok_or_else(invalidated)?;
    if !secret["metadata"]["deletionTimestamp"].is_null() {
        return Err(invalidated());
    }
    let stored = secret["data"]["token"]
        .as_str()
        .and_then(|b| STANDARD.decode(b).ok())
        .unwrap_or_default();
    if !constant_time_eq(&stored, token.as_bytes()) {
        return Err(AuthError::new("Token does not match server's copy"));
    }
    let sa = store
        .get(&gr("serviceaccounts"), &c.namespace, &c.sa_name)
        .ok_or_else(|| AuthError::new(format!("serviceaccounts {} not found", go_quote(&c.sa_name))))?;
    if !sa["metadata"]["deletionTimestamp"].is_null() {
        return Err(AuthError::new(format!(
            "ServiceAccount {}/{} has been deleted",
            c.namespace, c.sa_name
        )));
    }
    if uid_of(&sa) != c.sa_uid {
        return Err(AuthError::new(format!(
            "ServiceAccount UID ({}) does not match claim ({})",
            uid_of(&sa),
            c.sa_uid
        )));
    }
    if secret["metadata"]["labels"][LEGACY_INVALID_SINCE_LABEL]
        .as_str()
        .is_some_and(|v| !v.is_empty())
    {
        return Err(AuthError::new(format!(
            "the token in secret {ns}/{s} for service account {ns}/{a} has been marked invalid. Use tokens from the TokenRequest API or manually created secret-based tokens, or remove the '{LEGACY_INVALID_SINCE_LABEL}' label from the secret to temporarily allow use of this token",
            ns = c.namespace,
            s = c.secret_name,
            a = c.sa_name
        )));
    }
    Ok(UserInfo::service_account(&c.namespace, &c.sa_name, &c.sa_uid))
}

/// "10 minutes" for 600, as in the upstream message; other minimums (lowered for tests) in their unit.
fn describe_duration(secs: i64) -> String {
    match secs {
        60 => "1 minute".into(),
        s if s > 0 && s % 60 == 0 => format!("{} minutes", s / 60),
        1 => "1 second".into(),
        s => format!("{s} seconds"),
    }
}

fn string_list(v: &Value, field: &str) -> ApiResult<Vec<String>> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(String::from)
                    .ok_or_else(|| ApiError::bad_request(format!("{field} must be a list of strings")))
            })
            .collect(),
        _ => Err(ApiError::bad_request(format!("{field} must be a list of strings"))),
    }
}

/// A TokenRequest's answer: the object, and the warnings the server sends with it (HTTP `Warning`
/// headers, which kubectl prints and client-go logs).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenResponse {
    /// The TokenRequest with `spec` as applied and `status.token` filled.
    pub object: Value,
    /// Warning texts, without the `299 - "…"` framing.
    pub warnings: Vec<String>,
}

/// The TokenRequest subresource, in the order of upstream `TokenREST.Create`
/// (`pkg/registry/core/serviceaccount/storage/token.go`): name/namespace of the body, ServiceAccount
/// lookup (404), defaults, validation (422), bound object (404/400/409), the cap of
/// `--service-account-max-token-expiration` (with a warning), token.
pub fn token_request(ctx: &Ctx<'_>, ns: &str, sa: &str, body: &Value) -> ApiResult<TokenResponse> {
    let md = &body["metadata"];
    for (field, expected) in [("name", sa), ("namespace", ns)] {
        if let Some(given) = md[field].as_str().filter(|g| !g.is_empty() && *g != expected) {
            return Err(ApiError::invalid(
                "TokenRequest",
                TOKEN_REQUEST_GROUP,
                sa,
                vec![(
                    format!("metadata.{field}"),
                    format!(
                        "Invalid value: {}: must match the service account {field} if specified",
                        go_quote(given)
                    ),
                )],
            ));
        }
    }
    let sa_obj = ctx
        .store
        .get(&gr("serviceaccounts"), ns, sa)
        .ok_or_else(|| ApiError::not_found(&gr("serviceaccounts"), sa))?;
    let sa_uid = uid_of(&sa_obj).to_string();

    let spec = &body["spec"];
    let mut audiences = string_list(&spec["audiences"], "spec.audiences")?;
    if audiences.is_empty() {
        audiences = vec![ISSUER.to_string()];
    }
    let expiration = match &spec["expirationSeconds"] {
        Value::Null => DEFAULT_EXPIRATION_SECONDS,
        v => v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
    };
    let min = ctx.min_token_expiration_seconds;
    let mut causes = Vec::new();
    if expiration < min {
        causes.push((
            "spec.expirationSeconds".to_string(),
            format!(
                "Invalid value: {expiration}: may not specify a duration less than {}",
                describe_duration(min)
            ),
        ));
    }
    if expiration > MAX_EXPIRATION_SECONDS {
        causes.push((
            "spec.expirationSeconds".to_string(),
            format!("Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"),
        ));
    }
    if !causes.is_empty() {
        // Upstream names no object here: `TokenRequest.authentication.k8s.io "" is invalid: …`.
        return Err(ApiError::invalid("TokenRequest", TOKEN_REQUEST_GROUP, "", causes));
    }

    let mut k = KubernetesClaims {
        namespace: ns.into(),
        serviceaccount: ObjectRef {
            name: sa.into(),
            uid: sa_uid,
        },
        ..Default::default()
    };
    let bound_ref = &spec["boundObjectRef"];
    if bound_ref.is_object() {
        let kind = bound_ref["kind"].as_str().unwrap_or_default();
        let api_version = bound_ref["apiVersion"].as_str().unwrap_or_default();
        let name = bound_ref["name"].as_str().unwrap_or_default();
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let (resource, obj_ns) = match (group, kind) {
            ("", "Pod") => ("pods", ns),
            ("", "Secret") => ("secrets", ns),
            ("", "Node") => ("nodes", ""),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {group}/{version}, Kind={kind}"
                )));
            }
        };
        let obj = ctx
            .store
            .get(&gr(resource), obj_ns, name)
            .ok_or_else(|| ApiError::not_found(&gr(resource), name))?;
        let r = ObjectRef {
            name: name.into(),
            uid: uid_of(&obj).into(),
        };
        match kind {
            "Pod" => {
                // Pods without an explicit ServiceAccount run as "default" (admission defaults it).
                let pod_sa = obj["spec"]["serviceAccountName"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("default");
                if pod_sa != sa {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount {} to pod running with different serviceaccount name.",
                        go_quote(sa)
                    )));
                }
                // The node a pod runs on is recorded for information, with its uid when the Node exists.
                if let Some(node_name) = obj["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                    let node_uid = ctx
                        .store
                        .get(&gr("nodes"), "", node_name)
                        .map(|n| uid_of(&n).to_string())
                        .unwrap_or_default();
                    k.node = Some(ObjectRef {
                        name: node_name.into(),
                        uid: node_uid,
                    });
                }
                k.pod = Some(r.clone());
            }
            "Secret" => k.secret = Some(r.clone()),
            _ => k.node = Some(r.clone()),
        }
        if let Some(want) = bound_ref["uid"].as_str().filter(|u| !u.is_empty() && *u != r.uid) {
            let mut e = ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {kind} {}: the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated",
                    go_quote(name)
                ),
            );
            e.details = Some(json!({ "name": name, "kind": kind }));
            return Err(e);
        }
    }

    // After validation, as upstream: a request below the 600 s minimum is refused even under a smaller
    // cap, and only a positive cap applies. A real server refuses to start with a cap under one hour
    // (`the service-account-max-token-expiration must be between 1 hour and 2^32 seconds`, in
    // `pkg/controlplane/apiserver/options/options.go`); kubesim accepts any positive cap, so tests can
    // watch a capped token expire and be renewed in seconds.
    let mut warnings = Vec::new();
    let mut expiration = expiration;
    if let Some(max) = ctx.max_token_expiration_seconds.filter(|m| *m > 0 && expiration > *m) {
        warnings.push(format!(
            "requested expiration of {expiration} seconds shortened to {max} seconds"
        ));
        expiration = max;
    }

    let now = now_secs();
    let claims = bound_claims(now, k, &audiences, expiration);
    let token = ctx.tokens.sign(&claims);

    let mut out = if body.is_object() { body.clone() } else { json!({}) };
    out["apiVersion"] = json!("authentication.k8s.io/v1");
    out["kind"] = json!("TokenRequest");
    if !out["metadata"].is_object() {
        out["metadata"] = json!({});
    }
    out["metadata"]["name"] = json!(sa);
    out["metadata"]["namespace"] = json!(ns);
    out["metadata"]["creationTimestamp"] = json!(rfc3339(now));
    if !out["spec"].is_object() {
        out["spec"] = json!({});
    }
    out["spec"]["audiences"] = json!(audiences);
    out["spec"]["expirationSeconds"] = json!(expiration);
    if !bound_ref.is_object() {
        out["spec"]["boundObjectRef"] = Value::Null;
    }
    out["status"] = json!({ "token": token, "expirationTimestamp": rfc3339(claims.exp) });
    Ok(TokenResponse { object: out, warnings })
}

/// The token controller's work on a `kubernetes.io/service-account-token` Secret, done synchronously on
/// create: the ServiceAccount named by the annotation must exist (422 otherwise: upstream accepts the
/// Secret and its controller deletes it, which a synchronous simulator cannot mimic usefully); the uid
/// annotation is set; `data.token` (a legacy, non-expiring JWT) and `data.namespace` are filled when
/// missing. `data.ca.crt` is left to the caller, which knows the CA. Other Secrets are left alone.
pub fn fill_legacy_token(ctx: &Ctx<'_>, secret: &mut Value) -> ApiResult<()> {
    if secret["type"] != SA_TOKEN_SECRET_TYPE {
        return Ok(());
    }
    let ns = secret["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
    let name = secret["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let name_field = format!("metadata.annotations[{SA_NAME_ANNOTATION}]");
    let sa_name = secret["metadata"]["annotations"][SA_NAME_ANNOTATION]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if sa_name.is_empty() {
        return Err(ApiError::invalid(
            "Secret",
            "",
            &name,
            vec![(name_field, "Required value".into())],
        ));
    }
    let sa = ctx.store.get(&gr("serviceaccounts"), &ns, &sa_name).ok_or_else(|| {
        ApiError::invalid(
            "Secret",
            "",
            &name,
            vec![(name_field, format!("Not found: {}", go_quote(&sa_name)))],
        )
    })?;
    let sa_uid = uid_of(&sa).to_string();
    if let Some(given) = secret["metadata"]["annotations"][SA_UID_ANNOTATION]
        .as_str()
        .filter(|u| !u.is_empty() && *u != sa_uid)
    {
        return Err(ApiError::invalid(
            "Secret",
            "",
            &name,
            vec![(
                format!("metadata.annotations[{SA_UID_ANNOTATION}]"),
                format!(
                    "Invalid value: {}: does not match the uid of serviceaccount {}",
                    go_quote(given),
                    go_quote(&sa_name)
                ),
            )],
        ));
    }
    secret["metadata"]["annotations"][SA_UID_ANNOTATION] = json!(sa_uid);
    if !secret["data"].is_object() {
        secret["data"] = json!({});
    }
    let missing = |v: &Value| v.as_str().is_none_or(str::is_empty);
    if missing(&secret["data"]["token"]) {
        if name.is_empty() {
            // The token names its Secret; the API layer must resolve generateName first.
            return Err(ApiError::internal(
                "a service account token Secret needs its name before its token is issued",
            ));
        }
        let token = ctx.tokens.issue_legacy(&ns, &sa_name, &sa_uid, &name);
        secret["data"]["token"] = json!(STANDARD.encode(token));
    }
    if missing(&secret["data"]["namespace"]) {
        secret["data"]["namespace"] = json!(STANDARD.encode(&ns));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn api() -> Vec<String> {
        vec![ISSUER.to_string()]
    }

    fn payload(token: &str) -> Value {
        let part = token.split('.').nth(1).expect("payload part");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
    }

    fn header(token: &str) -> Value {
        let part = token.split('.').next().expect("header part");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
    }

    fn sign_at(now: i64, ns: &str, name: &str, uid: &str, exp: i64) -> String {
        let k = KubernetesClaims {
            namespace: ns.into(),
            serviceaccount: ObjectRef {
                name: name.into(),
                uid: uid.into(),
            },
            ..Default::default()
        };
        issuer().sign(&bound_claims(now, k, &api(), exp))
    }

    #[test]
    fn token_round_trip_has_the_kubernetes_claim_layout() {
        let store = Store::new();
        let s = sa(&store, "team", "bot");
        let (token, exp) = issuer().issue("team", "bot", &uid(&s), &api(), 3600, None);
        let now = chrono::Utc::now().timestamp();
        assert!((exp - now - 3600).abs() <= 1, "exp {exp} now {now}");

        let h = header(&token);
        assert_eq!(h, json!({ "alg": "RS256", "kid": issuer().key_id() }));
        let p = payload(&token);
        let keys: Vec<&String> = p.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["aud", "exp", "iat", "iss", "jti", "kubernetes.io", "nbf", "sub"]);
        assert_eq!(p["iss"], ISSUER);
        assert_eq!(p["sub"], "system:serviceaccount:team:bot");
        assert_eq!(p["aud"], json!([ISSUER]));
        assert_eq!(
            p["kubernetes.io"],
            json!({ "namespace": "team", "serviceaccount": { "name": "bot", "uid": uid(&s) } })
        );
        assert_eq!(p["nbf"], p["iat"]);

        let claims = issuer().verify(&token).expect("valid");
        assert_eq!(claims.exp, exp);
        assert_eq!(claims.kubernetes.serviceaccount.uid, uid(&s));

        let c = ctx(&store);
        let (user, auds) = authenticate_token(&c, &token, &api()).unwrap();
        assert_eq!(user.username, "system:serviceaccount:team:bot");
        assert_eq!(user.uid, uid(&s));
        assert_eq!(
            user.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:team",
                "system:authenticated"
            ]
        );
        assert_eq!(auds, api());
        assert_eq!(super::super::authenticate_headers(&c, &bearer(&token)).unwrap(), user);
    }

    #[test]
    fn tampered_or_foreign_tokens_are_rejected() {
        let store = Store::new();
        let s = sa(&store, "team", "bot");
        let (token, _) = issuer().issue("team", "bot", &uid(&s), &api(), 3600, None);
        // Swap the payload for one naming another ServiceAccount: the signature no longer matches.
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut p = payload(&token);
        p["sub"] = json!("system:serviceaccount:kube-system:admin");
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&p).unwrap());
        let forged = parts.join(".");
        assert!(issuer().verify(&forged).is_none());
        assert_eq!(
            authenticate_token(&ctx(&store), &forged, &api())
                .unwrap_err()
                .to_string(),
            "invalid bearer token"
        );
        // Signed by another key.
        let other = TokenIssuer::generate().unwrap();
        let (foreign, _) = other.issue("team", "bot", &uid(&s), &api(), 3600, None);
        assert!(issuer().verify(&foreign).is_none());
        assert!(authenticate_token(&ctx(&store), &foreign, &api()).is_err());
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_rejected() {
        let store = Store::new();
        let s = sa(&store, "team", "bot");
        let now = chrono::Utc::now().timestamp();
        let expired = sign_at(now - 1000, "team", "bot", &uid(&s), 600);
        assert!(issuer().verify(&expired).is_none());
        let e = authenticate_token(&ctx(&store), &expired, &api()).unwrap_err();
        assert_eq!(e.to_string(), "service account token has expired");
        let future = sign_at(now + 1000, "team", "bot", &uid(&s), 600);
        assert_eq!(
            authenticate_token(&ctx(&store), &future, &api())
                .unwrap_err()
                .to_string(),
            "service account token is not valid yet"
        );
        // Expiry is exact to the millisecond: valid right up to `exp`, refused just after.
        let t = sign_at(now, "team", "bot", &uid(&s), 5);
        assert!(authenticate_token_at(&ctx(&store), &t, &api(), (now + 5) * 1000).is_ok());
        assert!(authenticate_token_at(&ctx(&store), &t, &api(), (now + 5) * 1000 + 1).is_err());
    }

    #[test]
    fn remembered_signatures_skip_only_the_signature_check() {
        let store = Store::new();
        let s = sa(&store, "team", "bot");
        let own = TokenIssuer::generate().unwrap();
        let (token, _) = own.issue("team", "bot", &uid(&s), &api(), 3600, None);
        assert!(own.decode_verified(&token).is_ok());
        assert!(
            own.verified.lock().unwrap().contains_key(&token),
            "remembered after one check"
        );
        // A changed signature is a different token: checked, and refused.
        let mut forged = token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert!(own.decode_verified(&forged).is_err());
        // Times are checked on every use, remembered or not.
        let now = chrono::Utc::now().timestamp();
        let t = sign_at(now, "team", "bot", &uid(&s), 5);
        assert!(authenticate_token_at(&ctx(&store), &t, &api(), now * 1000).is_ok());
        assert!(authenticate_token_at(&ctx(&store), &t, &api(), (now + 6) * 1000).is_err());
        // The memory is bounded: a full cache starts afresh.
        {
            let mut v = own.verified.lock().unwrap();
            for i in v.len()..VERIFIED_CACHE_ENTRIES {
                v.insert(format!("filler-{i}"), json!({}));
            }
        }
        let (t, _) = own.issue("team", "bot", &uid(&s), &api(), 600, None);
        own.decode_verified(&t).unwrap();
        assert_eq!(own.verified.lock().unwrap().len(), 1);
    }

    #[test]
    fn deleting_or_recreating_the_service_account_revokes_at_once() {
        let store = Store::new();
        let s = sa(&store, "team", "bot");
        let (token, _) = issuer().issue("team", "bot", &uid(&s), &api(), 3600, None);
        assert!(authenticate_token(&ctx(&store), &token, &api()).is_ok());
        del(&store, "", "serviceaccounts", "team", "bot");
        assert_eq!(
            authenticate_token(&ctx(&store), &token, &api())
                .unwrap_err()
                .to_string(),
            "serviceaccounts \"bot\" not found"
        );
        let again = sa(&store, "team", "bot");
        assert_ne!(uid(&again), uid(&s));
        let e = authenticate_token(&ctx(&store), &token, &api())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("service account UID ("), "{e}");
        // The token still verifies cryptographically: revocation is a store check.
        assert!(issuer().verify(&token).is_some());
        // A ServiceAccount being deleted (finalizers pending) no longer authenticates either.
        let mut deleting = again.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
        store.update(&gr("serviceaccounts"), deleting, None).unwrap();
        let (t2, _) = issuer().issue("team", "bot", &uid(&again), &api(), 3600, None);
        assert_eq!(
            authenticate_token(&ctx(&store), &t2, &api()).unwrap_err().to_string(),
            "service account team/bot has been deleted"
        );
    }

    #[test]
    fn bound_pod_deleted_or_recreated_invalidates() {
        let store = Store::new();
        let s = sa(&store, "team", "bot");
        let p = pod(&store, "team", "web", "bot");
        let (token, _) = issuer().issue("team", "bot", &uid(&s), &api(), 3600, Some(("Pod", "web", &uid(&p))));
        assert_eq!(
            payload(&token)["kubernetes.io"]["pod"],
            json!({ "name": "web", "uid": uid(&p) })
        );
        assert!(authenticate_token(&ctx(&store), &token, &api()).is_ok());
        del(&store, "", "pods", "team", "web");
        assert_eq!(
            authenticate_token(&ctx(&store), &token, &api())
                .unwrap_err()
                .to_string(),
            "service account token has been invalidated"
        );
        pod(&store, "team", "web", "bot");
        assert!(
            authenticate_token(&ctx(&store), &token, &api())
                .unwrap_err()
                .to_string()
                .starts_with("pod UID (")
        );
    }

    #[test]
    fn bound_secret_deleted_invalidates() {
        let store = Store::new();
        let s = sa(&store, "team", "bot");
        let sec = put(
            &store,
            "",
            "secrets",
            json!({"metadata": {"namespace": "team", "name": "anchor"}}),
        );
        let (token, _) = issuer().issue(
            "team",
            "bot",
            &uid(&s),
            &api(),
            3600,
            Some(("Secret", "anchor", &uid(&sec))),
        );
        assert!(authenticate_token(&ctx(&store), &token, &api()).is_ok());
        del(&store, "", "secrets", "team", "anchor");
        assert!(authenticate_token(&ctx(&store), &token, &api()).is_err());
    }

    #[test]
    fn audiences_are_checked_against_the_api_server() {
        let store = Store::new();
        let s = sa(&store, "team", "bot");
        let vault = vec!["vault".to_string()];
        let (token, _) = issuer().issue("team", "bot", &uid(&s), &vault, 3600, None);
        let e = authenticate_token(&ctx(&store), &token, &api()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("token audiences [\"vault\"] is invalid for the target audiences [\"{ISSUER}\"]")
        );
        let (_, auds) = authenticate_token(&ctx(&store), &token, &vault).unwrap();
        assert_eq!(auds, vault);
        // The admin token is good for the API server only.
        assert!(authenticate_token(&ctx(&store), ADMIN, &vault).is_err());
        assert!(
            authenticate_token(&ctx(&store), ADMIN, &api())
                .unwrap()
                .0
                .is_privileged()
        );
    }

    #[test]
    fn websocket_subprotocol_carries_a_token() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::UPGRADE, "websocket".parse().unwrap());
        let proto = format!(
            "v5.channel.k8s.io, {WS_PROTOCOL_PREFIX}{}",
            URL_SAFE_NO_PAD.encode("tok")
        );
        h.insert(http::header::SEC_WEBSOCKET_PROTOCOL, proto.parse().unwrap());
        assert_eq!(bearer_token(&h).as_deref(), Some("tok"));
        h.remove(http::header::UPGRADE);
        assert_eq!(bearer_token(&h), None);
    }

    fn legacy_secret(ns: &str, name: &str, sa: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "type": SA_TOKEN_SECRET_TYPE,
               "metadata": {"namespace": ns, "name": name, "annotations": {SA_NAME_ANNOTATION: sa}}})
    }

    fn secret_token(secret: &Value) -> String {
        String::from_utf8(STANDARD.decode(secret["data"]["token"].as_str().unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn legacy_token_secret_is_filled_and_authenticates() {
        let store = Store::new();
        let s = sa(&store, "team", "bot");
        let c = ctx(&store);
        let mut secret = legacy_secret("team", "bot-token", "bot");
        fill_legacy_token(&c, &mut secret).unwrap();
        assert_eq!(secret["metadata"]["annotations"][SA_UID_ANNOTATION], uid(&s));
        assert_eq!(secret["data"]["namespace"], STANDARD.encode("team"));
        let token = secret_token(&secret);
        let p = payload(&token);
        assert_eq!(p["iss"], LEGACY_ISSUER);
        assert_eq!(p["kubernetes.io/serviceaccount/secret.name"], "bot-token");
        assert!(p.get("exp").is_none(), "legacy tokens do not expire");
        let stored = put(&store, "", "secrets", secret);

        let (user, _) = authenticate_token(&c, &token, &api()).unwrap();
        assert_eq!(user, UserInfo::service_account("team", "bot", &uid(&s)));

        // A token already present is kept (the controller fills only what is missing).
        let mut again = stored.clone();
        fill_legacy_token(&c, &mut again).unwrap();
        assert_eq!(secret_token(&again), token);

        // Replacing the Secret's token invalidates the old one.
        let mut changed = stored.clone();
        changed["data"]["token"] = json!(STANDARD.encode("something-else"));
        store.update(&gr("secrets"), changed, None).unwrap();
        assert_eq!(
            authenticate_token(&c, &token, &api()).unwrap_err().to_string(),
            "Token does not match server's copy"
        );
        store.update(&gr("secrets"), stored.clone(), None).unwrap();
        assert!(authenticate_token(&c, &token, &api()).is_ok());

        // Recreating the ServiceAccount invalidates it.
        del(&store, "", "serviceaccounts", "team", "bot");
        sa(&store, "team", "bot");
        assert!(
            authenticate_token(&c, &token, &api())
                .unwrap_err()
                .to_string()
                .starts_with("ServiceAccount UID (")
        );

        // So does deleting the Secret.
        del(&store, "", "secrets", "team", "bot-token");
        assert_eq!(
            authenticate_token(&c, &token, &api()).unwrap_err().to_string(),
            "Token has been invalidated"
        );
    }

    #[test]
    fn legacy_token_secret_needs_an_existing_service_account() {
        let store = Store::new();
        let c = ctx(&store);
        let mut missing_sa = legacy_secret("team", "t", "ghost");
        let e = fill_legacy_token(&c, &mut missing_sa).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "Secret \"t\" is invalid: metadata.annotations[kubernetes.io/service-account.name]: Not found: \"ghost\""
        );
        let mut no_annotation = json!({"type": SA_TOKEN_SECRET_TYPE, "metadata": {"namespace": "team", "name": "t"}});
        assert_eq!(fill_legacy_token(&c, &mut no_annotation).unwrap_err().code, 422);
        sa(&store, "team", "bot");
        let mut wrong_uid = legacy_secret("team", "t", "bot");
        wrong_uid["metadata"]["annotations"][SA_UID_ANNOTATION] = json!("not-the-uid");
        assert_eq!(fill_legacy_token(&c, &mut wrong_uid).unwrap_err().code, 422);
        // Other Secret types are untouched.
        let mut opaque = json!({"type": "Opaque", "metadata": {"namespace": "team", "name": "o"}, "data": {}});
        let before = opaque.clone();
        fill_legacy_token(&c, &mut opaque).unwrap();
        assert_eq!(opaque, before);
    }

    #[test]
    fn token_request_defaults_and_response_shape() {
        let store = Store::new();
        let s = sa(&store, "team", "bot");
        let c = ctx(&store);
        let out = token_request(
            &c,
            "team",
            "bot",
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}),
        )
        .unwrap();
        assert!(out.warnings.is_empty(), "no cap, no warning: {:?}", out.warnings);
        let out = out.object;
        assert_eq!(out["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(out["kind"], "TokenRequest");
        assert_eq!(out["metadata"]["name"], "bot");
        assert_eq!(out["metadata"]["namespace"], "team");
        assert!(out["metadata"]["creationTimestamp"].is_string());
        assert_eq!(out["spec"]["expirationSeconds"], 3600);
        assert_eq!(out["spec"]["audiences"], json!([ISSUER]));
        assert!(out["spec"]["boundObjectRef"].is_null());
        let token = out["status"]["token"].as_str().unwrap();
        let claims = issuer().verify(token).unwrap();
        assert_eq!(claims.exp - claims.iat, 3600);
        assert_eq!(out["status"]["expirationTimestamp"], rfc3339(claims.exp));
        assert_eq!(claims.kubernetes.serviceaccount.uid, uid(&s));
        assert!(authenticate_token(&c, token, &api()).is_ok());
    }

    #[test]
    fn token_request_validation_and_errors() {
        let store = Store::new();
        sa(&store, "team", "bot");
        let c = ctx(&store);
        let short = token_request(&c, "team", "bot", &json!({"spec": {"expirationSeconds": 60}})).unwrap_err();
        assert_eq!(short.code, 422);
        assert_eq!(
            short.message,
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        );
        assert!(token_request(&c, "team", "bot", &json!({"spec": {"expirationSeconds": 600}})).is_ok());
        let long = token_request(
            &c,
            "team",
            "bot",
            &json!({"spec": {"expirationSeconds": (1i64 << 32) + 1}}),
        )
        .unwrap_err();
        assert!(
            long.message
                .ends_with("may not specify a duration larger than 2^32 seconds"),
            "{}",
            long.message
        );

        // A lowered minimum (tests of expiry) is used, in its own words.
        let lowered = Ctx {
            min_token_expiration_seconds: 2,
            ..c
        };
        assert!(token_request(&lowered, "team", "bot", &json!({"spec": {"expirationSeconds": 2}})).is_ok());
        let e = token_request(&lowered, "team", "bot", &json!({"spec": {"expirationSeconds": 1}})).unwrap_err();
        assert!(
            e.message.ends_with("may not specify a duration less than 2 seconds"),
            "{}",
            e.message
        );

        let missing = token_request(&c, "team", "ghost", &json!({"spec": {"expirationSeconds": 60}})).unwrap_err();
        assert_eq!(
            (missing.code, missing.message.as_str()),
            (404, "serviceaccounts \"ghost\" not found")
        );

        let wrong_name = token_request(&c, "team", "bot", &json!({"metadata": {"name": "other"}})).unwrap_err();
        assert_eq!(wrong_name.code, 422);

        let no_pod = token_request(
            &c,
            "team",
            "bot",
            &json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}}}),
        )
        .unwrap_err();
        assert_eq!((no_pod.code, no_pod.message.as_str()), (404, "pods \"web\" not found"));
        pod(&store, "team", "other-sa-pod", "someone-else");
        let other = token_request(
            &c,
            "team",
            "bot",
            &json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "other-sa-pod"}}}),
        )
        .unwrap_err();
        assert_eq!(other.code, 400);
        let cm = token_request(
            &c,
            "team",
            "bot",
            &json!({"spec": {"boundObjectRef": {"kind": "ConfigMap", "apiVersion": "v1", "name": "x"}}}),
        )
        .unwrap_err();
        assert_eq!(
            (cm.code, cm.message.as_str()),
            (400, "cannot bind token to object of type /v1, Kind=ConfigMap")
        );
    }

    #[test]
    fn token_request_bound_to_a_pod() {
        let store = Store::new();
        sa(&store, "team", "bot");
        let p = pod(&store, "team", "web", "bot");
        let c = ctx(&store);
        let body = json!({"spec": {"audiences": ["vault", ISSUER], "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": uid(&p)}}});
        let out = token_request(&c, "team", "bot", &body).unwrap().object;
        assert_eq!(out["spec"]["boundObjectRef"]["name"], "web");
        let token = out["status"]["token"].as_str().unwrap();
        let claims = issuer().verify(token).unwrap();
        assert_eq!(claims.aud, ["vault", ISSUER]);
        assert_eq!(
            claims.kubernetes.pod,
            Some(ObjectRef {
                name: "web".into(),
                uid: uid(&p)
            })
        );
        assert!(authenticate_token(&c, token, &api()).is_ok());
        del(&store, "", "pods", "team", "web");
        assert!(authenticate_token(&c, token, &api()).is_err());

        let p2 = pod(&store, "team", "web", "bot");
        let stale =
            json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": uid(&p)}}});
        let e = token_request(&c, "team", "bot", &stale).unwrap_err();
        assert_eq!(e.code, 409);
        assert_ne!(uid(&p), uid(&p2));
    }

    #[test]
    fn key_survives_a_pem_round_trip_and_publishes_a_jwks() {
        let pem = issuer().private_key_pem().unwrap();
        let again = TokenIssuer::from_private_key_pem(&pem).unwrap();
        assert_eq!(again.key_id(), issuer().key_id());
        let (token, _) = again.issue("a", "b", "u", &api(), 600, None);
        assert!(issuer().verify(&token).is_some());
        let jwks = issuer().public_jwks();
        assert_eq!(jwks["keys"][0]["kid"], issuer().key_id());
        assert_eq!(jwks["keys"][0]["e"], "AQAB");
        assert_eq!(jwks["keys"][0]["alg"], "RS256");
        let n = URL_SAFE_NO_PAD.decode(jwks["keys"][0]["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), 256, "2048-bit modulus");
        assert_eq!(issuer().openid_configuration()["issuer"], ISSUER);
        assert!(!format!("{:?}", issuer()).contains("PRIVATE"));
    }

    #[test]
    fn the_key_id_is_the_rfc7638_thumbprint() {
        // Tokens carry the kid and a state file keeps the key, so the kid of a key must not change
        // with the JWT library: it is the RFC 7638 SHA-256 thumbprint of the public JWK, whose
        // members are the required ones in lexicographic order, without whitespace.
        let jwks = issuer().public_jwks();
        let (e, n) = (
            jwks["keys"][0]["e"].as_str().unwrap(),
            jwks["keys"][0]["n"].as_str().unwrap(),
        );
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        assert_eq!(issuer().key_id(), URL_SAFE_NO_PAD.encode(digest.as_ref()));
    }

    /// A context as a real server's defaults: 60 s leeway, 10 s success cache.
    fn realistic(store: &Store) -> Ctx<'_> {
        Ctx {
            token_leeway_seconds: 60,
            auth_cache_ttl: std::time::Duration::from_secs(10),
            ..ctx(store)
        }
    }

    #[test]
    fn leeway_accepts_a_token_a_minute_past_exp_and_before_nbf() {
        // go-jose's `Claims.ValidateWithLeeway` with `DefaultLeeway` (one minute), as called by
        // `pkg/serviceaccount/claims.go`.
        let store = Store::new();
        let s = sa(&store, "team", "bot");
        let c = Ctx {
            auth_cache_ttl: std::time::Duration::ZERO,
            ..realistic(&store)
        };
        let now = chrono::Utc::now().timestamp();
        let t = sign_at(now, "team", "bot", &uid(&s), 5);
        assert!(authenticate_token_at(&c, &t, &api(), (now + 5 + 60) * 1000).is_ok());
        assert_eq!(
            authenticate_token_at(&c, &t, &api(), (now + 5 + 60) * 1000 + 1)
                .unwrap_err()
                .to_string(),
            "service account token has expired"
        );
        // Issued by a server whose clock is ahead: accepted within the leeway, refused beyond it.
        let ahead = sign_at(now + 60, "team", "bot", &uid(&s), 600);
        assert!(authenticate_token_at(&c, &ahead, &api(), now * 1000).is_ok());
        let far_ahead = sign_at(now + 61, "team", "bot", &uid(&s), 600);
        assert_eq!(
            authenticate_token_at(&c, &far_ahead, &api(), now * 1000)
                .unwrap_err()
                .to_string(),
            "service account token is not valid yet"
        );
        // A negative leeway is none.
        let none = Ctx {
            token_leeway_seconds: -5,
            ..c
        };
        assert!(authenticate_token_at(&none, &t, &api(), (now + 5) * 1000 + 1).is_err());
    }

    #[test]
    fn objects_whose_deletion_started_within_the_leeway_still_validate() {
        // `invalidIfDeletedBefore := nowTime.Add(-jwt.DefaultLeeway)` in `pkg/serviceaccount/claims.go`.
        let store = Store::new();
        let s = sa(&store, "team", "bot");
        let p = pod(&store, "team", "web", "bot");
        let c = Ctx {
            auth_cache_ttl: std::time::Duration::ZERO,
            ..realistic(&store)
        };
        let (token, _) = issuer().issue("team", "bot", &uid(&s), &api(), 3600, Some(("Pod", "web", &uid(&p))));
        let now_ms = now_millis();
        let at = |secs_ago: i64| {
            chrono::DateTime::from_timestamp_millis(now_ms - secs_ago * 1000)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let mut deleting = p.clone();
        deleting["metadata"]["deletionTimestamp"] = json!(at(30));
        let p = store.update(&gr("pods"), deleting, None).unwrap();
        assert!(authenticate_token_at(&c, &token, &api(), now_ms).is_ok());
        let mut long_ago = p.clone();
        long_ago["metadata"]["deletionTimestamp"] = json!(at(61));
        store.update(&gr("pods"), long_ago, None).unwrap();
        assert_eq!(
            authenticate_token_at(&c, &token, &api(), now_ms)
                .unwrap_err()
                .to_string(),
            "service account token has been invalidated"
        );
        let mut sa_deleting = s.clone();
        sa_deleting["metadata"]["deletionTimestamp"] = json!(at(30));
        store.update(&gr("serviceaccounts"), sa_deleting, None).unwrap();
        let (unbound, _) = issuer().issue("team", "bot", &uid(&s), &api(), 3600, None);
        assert!(authenticate_token_at(&c, &unbound, &api(), now_ms).is_ok());
        assert!(
            authenticate_token_at(&c, &unbound, &api(), now_ms + 31_000)
                .unwrap_err()
                .to_string()
                .ends_with("has been deleted")
        );
    }

    #[test]
    fn a_success_is_remembered_for_the_ttl_after_the_service_account_is_deleted() {
        let store = Store::new();
        let s = sa(&store, "team", "bot");
        let c = realistic(&store);
        let (token, _) = issuer().issue("team", "bot", &uid(&s), &api(), 3600, None);
        let t0 = now_millis();
        let first = authenticate_token_at(&c, &token, &api(), t0).unwrap();
        del(&store, "", "serviceaccounts", "team", "bot");
        // Same identity from the cache, up to the TTL from when it was stored...
        assert_eq!(authenticate_token_at(&c, &token, &api(), t0 + 9_999).unwrap(), first);
        assert_eq!(first.0, UserInfo::service_account("team", "bot", &uid(&s)));
        // ...and refused from then on: the entry is gone and the store says no.
        assert_eq!(
            authenticate_token_at(&c, &token, &api(), t0 + 10_000)
                .unwrap_err()
                .to_string(),
            "serviceaccounts \"bot\" not found"
        );
        // With the cache disabled, the same situation is refused at once.
        let s2 = sa(&store, "team", "bot2");
        let (t2, _) = issuer().issue("team", "bot2", &uid(&s2), &api(), 3600, None);
        let off = Ctx {
            auth_cache_ttl: std::time::Duration::ZERO,
            ..c
        };
        assert!(authenticate_token_at(&off, &t2, &api(), t0).is_ok());
        del(&store, "", "serviceaccounts", "team", "bot2");
        assert!(authenticate_token_at(&off, &t2, &api(), t0 + 1).is_err());
        let key = issuer().auth_cache.key_for(&t2, &api());
        assert!(
            issuer().auth_cache.get(&key, t0).is_none(),
            "a disabled cache stores nothing"
        );
    }

    #[test]
    fn the_cache_is_keyed_by_audiences_and_keeps_no_failures() {
        let store = Store::new();
        let s = sa(&store, "team", "bot");
        let c = Ctx {
            token_leeway_seconds: 0,
            ..realistic(&store)
        };
        let both = vec!["vault".to_string(), ISSUER.to_string()];
        let (token, _) = issuer().issue("team", "bot", &uid(&s), &both, 3600, None);
        let t0 = now_millis();
        assert_eq!(authenticate_token_at(&c, &token, &api(), t0).unwrap().1, api());
        del(&store, "", "serviceaccounts", "team", "bot");
        assert!(authenticate_token_at(&c, &token, &api(), t0 + 1).is_ok());
        // Another audience is another entry (a TokenReview for "vault"): not cached, so refused.
        let vault = vec!["vault".to_string()];
        assert!(authenticate_token_at(&c, &token, &vault, t0 + 1).is_err());

        // Failures are not remembered (upstream's failure TTL defaults to 0): a token refused as not
        // yet valid is accepted as soon as it is.
        let s2 = sa(&store, "team", "later");
        let now = t0 / 1000;
        let early = sign_at(now + 100, "team", "later", &uid(&s2), 600);
        assert!(authenticate_token_at(&c, &early, &api(), t0).is_err());
        assert!(authenticate_token_at(&c, &early, &api(), (now + 100) * 1000).is_ok());

        // The admin token does not go through the cache.
        assert!(authenticate_token_at(&c, ADMIN, &api(), t0).unwrap().0.is_privileged());
        let key = issuer().auth_cache.key_for(ADMIN, &api());
        assert!(issuer().auth_cache.get(&key, t0).is_none());
    }

    #[test]
    fn a_cached_success_outlives_the_token_expiry_as_upstream() {
        // `cached_token_authenticator.go` stores a success for the whole success TTL, whatever the
        // token's `exp`.
        let store = Store::new();
        let s = sa(&store, "team", "bot");
        let c = Ctx {
            token_leeway_seconds: 0,
            ..realistic(&store)
        };
        let now = now_millis() / 1000;
        let t = sign_at(now, "team", "bot", &uid(&s), 5);
        assert!(authenticate_token_at(&c, &t, &api(), (now + 4) * 1000).is_ok());
        assert!(authenticate_token_at(&c, &t, &api(), (now + 13) * 1000).is_ok());
        assert_eq!(
            authenticate_token_at(&c, &t, &api(), (now + 14) * 1000)
                .unwrap_err()
                .to_string(),
            "service account token has expired"
        );
    }

    #[test]
    fn the_auth_cache_is_bounded() {
        let cache = AuthCache::new();
        let user = UserInfo::service_account("team", "bot", "u");
        let t0 = 1_000_000;
        // Half of the entries have expired by `t0 + 10`.
        for i in 0..AUTH_CACHE_ENTRIES {
            let expires = if i % 2 == 0 { t0 + 5 } else { t0 + 10_000 + i as i64 };
            cache.insert(cache.key_for(&format!("t{i}"), &[]), &user, &[], expires, t0);
        }
        assert_eq!(cache.len(), AUTH_CACHE_ENTRIES);
        cache.insert(cache.key_for("new", &[]), &user, &[], t0 + 20_000, t0 + 10);
        assert_eq!(cache.len(), AUTH_CACHE_ENTRIES / 2 + 1, "expired entries dropped first");
        for i in 0..AUTH_CACHE_ENTRIES {
            cache.insert(cache.key_for(&format!("u{i}"), &[]), &user, &[], t0 + 30_000, t0 + 10);
        }
        assert_eq!(cache.len(), AUTH_CACHE_ENTRIES);
        // The live entries closest to expiry made room; the newest are kept.
        assert!(cache.get(&cache.key_for("t1", &[]), t0 + 10).is_none());
        assert!(
            cache
                .get(&cache.key_for(&format!("u{}", AUTH_CACHE_ENTRIES - 1), &[]), t0 + 10)
                .is_some()
        );
    }

    #[test]
    fn cache_keys_do_not_collide_across_field_boundaries() {
        let cache = AuthCache::new();
        assert_ne!(cache.key_for("ab", &["c".into()]), cache.key_for("a", &["bc".into()]));
        assert_ne!(cache.key_for("a", &[]), cache.key_for("a", &["".into()]));
        assert_ne!(AuthCache::new().key_for("a", &[]), cache.key_for("a", &[]));
    }

    #[test]
    fn a_token_request_over_the_cap_is_shortened_with_a_warning() {
        // `TokenREST.Create` in `pkg/registry/core/serviceaccount/storage/token.go`.
        let store = Store::new();
        sa(&store, "team", "bot");
        let c = Ctx {
            max_token_expiration_seconds: Some(1200),
            ..ctx(&store)
        };
        let out = token_request(&c, "team", "bot", &json!({"spec": {"expirationSeconds": 7200}})).unwrap();
        assert_eq!(
            out.warnings,
            ["requested expiration of 7200 seconds shortened to 1200 seconds"]
        );
        assert_eq!(out.object["spec"]["expirationSeconds"], 1200);
        let claims = issuer()
            .verify(out.object["status"]["token"].as_str().unwrap())
            .unwrap();
        assert_eq!(claims.exp - claims.iat, 1200);
        assert_eq!(out.object["status"]["expirationTimestamp"], rfc3339(claims.exp));
        // The default hour is shortened too; a request within the cap is not, and says nothing.
        let default = token_request(&c, "team", "bot", &json!({"spec": {}})).unwrap();
        assert_eq!(
            default.warnings,
            ["requested expiration of 3600 seconds shortened to 1200 seconds"]
        );
        let within = token_request(&c, "team", "bot", &json!({"spec": {"expirationSeconds": 1200}})).unwrap();
        assert!(within.warnings.is_empty());
        assert_eq!(within.object["spec"]["expirationSeconds"], 1200);
        // Validation comes first: under the minimum is 422 whatever the cap.
        assert_eq!(
            token_request(&c, "team", "bot", &json!({"spec": {"expirationSeconds": 60}}))
                .unwrap_err()
                .code,
            422
        );
        // A cap below the minimum (kubesim only, for fast tests) still applies after validation.
        let small = Ctx {
            max_token_expiration_seconds: Some(30),
            ..c
        };
        let out = token_request(&small, "team", "bot", &json!({"spec": {"expirationSeconds": 600}})).unwrap();
        assert_eq!(out.object["spec"]["expirationSeconds"], 30);
        // Only a positive cap applies.
        for cap in [0, -1] {
            let off = Ctx {
                max_token_expiration_seconds: Some(cap),
                ..c
            };
            let out = token_request(&off, "team", "bot", &json!({"spec": {}})).unwrap();
            assert!(out.warnings.is_empty());
            assert_eq!(out.object["spec"]["expirationSeconds"], 3600);
        }
    }
}
