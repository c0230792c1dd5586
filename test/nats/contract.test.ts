/** The shared RevocationList and SessionStore contracts against the NATS implementations, on a test nats-server. */
import { afterAll, beforeAll } from "vitest";
import { defineRevocationListContract } from "../contract/revocation-list.contract.js";
import { defineSessionStoreContract } from "../contract/session-store.contract.js";
import { startNatsServer, type NatsServer } from "../helpers/nats-server.js";
import { waitFor } from "../helpers/wait.js";
import { connectClient, createRevocationStream, createSessionBucket, openList, openStore, type TestClient } from "./fixtures.js";

let server: NatsServer;
let client: TestClient;

beforeAll(async () => {
  server = await startNatsServer();
  client = await connectClient(server.url);
});

afterAll(async () => {
  await client?.close();
  await server?.cleanup();
});

defineRevocationListContract("NATS JetStream", async () => {
  const feed = await createRevocationStream(client);
  const list = await openList(client, feed);
  return {
    list,
    async cleanup() {
      await list.close();
      await client.jsm.streams.delete(feed.stream).catch(() => undefined);
    },
  };
});

defineSessionStoreContract("NATS KV", async () => {
  const bucket = await createSessionBucket(client);
  const store = await openStore(client, bucket);
  return {
    store,
    async cutOff() {
      await server.stop();
      await waitFor(() => !client.link.connected, "the client to notice the outage");
    },
    async cleanup() {
      if (!server.running) {
        await server.start();
        await waitFor(() => client.link.connected, "the client to reconnect");
      }
      await store.close();
      await client.jsm.streams.delete(`KV_${bucket}`).catch(() => undefined);
    },
  };
});
