// panva's oidc-provider (certified OpenID provider), configured for the gateway's tests.
// Everything comes from the environment: OP_PORT, OP_CLIENT_ID, OP_CLIENT_SECRET,
// OP_REDIRECT_URI, OP_POST_LOGOUT_URI, OP_AT_TTL (seconds), OP_JWT_ACCESS_TOKENS ("1": JWT
// access tokens for a resource, else opaque). Its development sign-in pages accept any login
// and password; the login becomes the subject.
import Provider from "oidc-provider";

const env = process.env;
const port = Number(env.OP_PORT);
const issuer = `http://127.0.0.1:${port}`;
const ttl = Number(env.OP_AT_TTL || 3600);
const jwtAccessTokens = env.OP_JWT_ACCESS_TOKENS === "1";

const features = {
  devInteractions: { enabled: true },
  revocation: { enabled: true },
};
if (jwtAccessTokens) {
  features.resourceIndicators = {
    enabled: true,
    defaultResource: () => "https://api.example.test",
    useGrantedResource: () => true,
    getResourceServerInfo: () => ({
      scope: "api",
      accessTokenFormat: "jwt",
      accessTokenTTL: ttl,
    }),
  };
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: env.OP_CLIENT_ID,
      client_secret: env.OP_CLIENT_SECRET,
      redirect_uris: [env.OP_REDIRECT_URI],
      post_logout_redirect_uris: env.OP_POST_LOGOUT_URI ? [env.OP_POST_LOGOUT_URI] : [],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  features,
  claims: {
    openid: ["sub"],
    profile: ["preferred_username", "name"],
    email: ["email", "email_verified"],
  },
  conformIdTokenClaims: false,
  rotateRefreshToken: () => true,
  ttl: { AccessToken: ttl, IdToken: 3600, RefreshToken: 86400, Session: 86400, Grant: 86400 },
  cookies: { keys: ["gateway-tests-op-cookie-key"] },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: id,
          name: `${id[0].toUpperCase()}${id.slice(1)} of the OP`,
          email: `${id}@op.example.test`,
          email_verified: true,
        };
      },
    };
  },
});

provider.listen(port, "127.0.0.1", () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
