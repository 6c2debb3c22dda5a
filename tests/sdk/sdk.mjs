// Drives the providers' official npm SDKs for tests/it/sdk.rs.
//
// Reads one JSON request on stdin, `{"op": "<provider>", ...}`, and prints one JSON
// answer: `sdk` (what the SDK signs, where it can sign) and `accepts` /
// `accepts_tampered` (whether the SDK's verifier accepts what forebay signed, and the
// same with the body changed). Nothing here talks to the network.
import { readFileSync } from "node:fs";

const input = JSON.parse(readFileSync(0, "utf8"));
const tampered = input.payload + " ";

const ops = {
  // stripe: webhooks.generateTestHeaderString signs, webhooks.constructEvent verifies.
  async stripe({ secret, payload, timestamp, header }) {
    const { default: Stripe } = await import("stripe");
    const { webhooks } = new Stripe("sk_test_unused");
    const accepts = (body) => {
      try {
        webhooks.constructEvent(body, header, secret);
        return true;
      } catch {
        return false;
      }
    };
    return {
      sdk: { "Stripe-Signature": webhooks.generateTestHeaderString({ payload, secret, timestamp }) },
      accepts: accepts(payload),
      accepts_tampered: accepts(tampered),
    };
  },

  // twilio: getExpectedTwilioSignature signs, validateRequest verifies (form params).
  async twilio({ secret, url, params, signature }) {
    const { default: twilio } = await import("twilio");
    const changed = { ...params, Digits: params.Digits + "0" };
    return {
      sdk: { "X-Twilio-Signature": twilio.getExpectedTwilioSignature(secret, url, params) },
      accepts: twilio.validateRequest(secret, signature, url, params),
      accepts_tampered: twilio.validateRequest(secret, signature, url, changed),
    };
  },

  // standardwebhooks: Webhook.sign / Webhook.verify (webhook-* headers).
  async "standard-webhooks"({ secret, id, timestamp, payload, headers }) {
    const { Webhook } = await import("standardwebhooks");
    return standardWebhooks(new Webhook(secret), "webhook", { id, timestamp, payload, headers });
  },

  // svix: the same API, sending svix-* headers.
  async svix({ secret, id, timestamp, payload, headers }) {
    const { Webhook } = await import("svix");
    return standardWebhooks(new Webhook(secret), "svix", { id, timestamp, payload, headers });
  },

  // @octokit/webhooks-methods: sign / verify of X-Hub-Signature-256.
  async github({ secret, payload, signature }) {
    const { sign, verify } = await import("@octokit/webhooks-methods");
    return {
      sdk: { "X-Hub-Signature-256": await sign(secret, payload) },
      accepts: await verify(secret, payload, signature),
      accepts_tampered: await verify(secret, tampered, signature),
    };
  },

  // discord-interactions: verifyKey only (Discord signs; the SDK has no signer).
  async discord({ public_key, payload, signature, timestamp }) {
    const { verifyKey } = await import("discord-interactions");
    return {
      accepts: await verifyKey(payload, signature, timestamp, public_key),
      accepts_tampered: await verifyKey(tampered, signature, timestamp, public_key),
    };
  },

  // @sendgrid/eventwebhook: EventWebhook.verifySignature only.
  async sendgrid({ public_key, payload, signature, timestamp }) {
    const { default: sendgrid } = await import("@sendgrid/eventwebhook");
    const ew = new sendgrid.EventWebhook();
    const key = ew.convertPublicKeyToECDSA(public_key);
    return {
      accepts: ew.verifySignature(key, payload, signature, timestamp),
      accepts_tampered: ew.verifySignature(key, tampered, signature, timestamp),
    };
  },

  // jose (the JOSE library most JWT senders use): SignJWT signs, jwtVerify verifies;
  // the `sha256` body-hash claim is compared here, as the `jwt` kind's `body_hash` does.
  async jwt({ alg, private_key, public_key, issuer, payload, timestamp, token }) {
    const { SignJWT, jwtVerify, importPKCS8, importSPKI } = await import("jose");
    const { createHash } = await import("node:crypto");
    const sha256 = (body) => createHash("sha256").update(body).digest("hex");
    const signed = await new SignJWT({ sha256: sha256(payload) })
      .setProtectedHeader({ alg })
      .setIssuer(issuer)
      .setIssuedAt(timestamp)
      .setExpirationTime(timestamp + 300)
      .sign(await importPKCS8(private_key, alg));
    const key = await importSPKI(public_key, alg);
    const accepts = async (body) => {
      try {
        const { payload: claims } = await jwtVerify(token, key, { issuer, algorithms: [alg] });
        return claims.sha256 === sha256(body);
      } catch {
        return false;
      }
    };
    return {
      sdk: { Authorization: `Bearer ${signed}` },
      accepts: await accepts(payload),
      accepts_tampered: await accepts(tampered),
    };
  },

  // @sanity/webhook: encodeSignatureHeader signs, isValidSignature verifies.
  async sanity({ secret, payload, timestamp_ms, signature }) {
    const { encodeSignatureHeader, isValidSignature } = await import("@sanity/webhook");
    return {
      sdk: { "sanity-webhook-signature": await encodeSignatureHeader(payload, timestamp_ms, secret) },
      accepts: await isValidSignature(payload, signature, secret),
      accepts_tampered: await isValidSignature(tampered, signature, secret),
    };
  },

  // messagebird: lib/webhook-signature-jwt.js verify only (MessageBird signs).
  async messagebird({ secret, url, payload, token }) {
    const { default: mb } = await import("messagebird/lib/webhook-signature-jwt.js");
    const { createSecretKey } = await import("node:crypto");
    const key = createSecretKey(Buffer.from(secret, "utf8"));
    const accepts = async (body) => {
      try {
        await mb.verify(url, Buffer.from(body), token, key);
        return true;
      } catch {
        return false;
      }
    };
    return { accepts: await accepts(payload), accepts_tampered: await accepts(tampered) };
  },

  // @workos-inc/node: webhooks.computeSignature signs, webhooks.verifyHeader verifies
  // (`t=` in milliseconds).
  async workos({ secret, payload, timestamp_ms, signature }) {
    const { WorkOS } = await import("@workos-inc/node");
    const { webhooks } = new WorkOS("sk_test_unused");
    const accepts = async (body) => {
      try {
        return await webhooks.verifyHeader({ payload: body, sigHeader: signature, secret });
      } catch {
        return false;
      }
    };
    const sig = await webhooks.computeSignature(timestamp_ms, payload, secret);
    return {
      sdk: { "WorkOS-Signature": `t=${timestamp_ms}, v1=${sig}` },
      accepts: await accepts(payload),
      accepts_tampered: await accepts(tampered),
    };
  },

  // telnyx: TelnyxWebhook.verify only (Telnyx signs with its private key).
  async telnyx({ public_key, payload, headers }) {
    const { TelnyxWebhook } = await import("telnyx/lib/webhooks");
    const webhook = new TelnyxWebhook(public_key);
    const accepts = async (body) => {
      try {
        await webhook.verify(body, headers);
        return true;
      } catch {
        return false;
      }
    };
    return { accepts: await accepts(payload), accepts_tampered: await accepts(tampered) };
  },
};

function standardWebhooks(wh, family, { id, timestamp, payload, headers }) {
  const accepts = (body) => {
    try {
      wh.verify(body, headers);
      return true;
    } catch {
      return false;
    }
  };
  return {
    sdk: {
      [`${family}-id`]: id,
      [`${family}-timestamp`]: String(timestamp),
      [`${family}-signature`]: wh.sign(id, new Date(timestamp * 1000), payload),
    },
    accepts: accepts(payload),
    accepts_tampered: accepts(tampered),
  };
}

const op = ops[input.op];
if (!op) {
  console.error(`unknown op ${input.op}`);
  process.exit(2);
}
process.stdout.write(JSON.stringify(await op(input)));
