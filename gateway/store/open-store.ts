/** Picks the store the config asks for: MongoDB when `MongoDBURI` is set, SQLite otherwise. */
import type { GatewayConfig } from '../config/imagemanager.js';
import type { ImageStore } from './image-store.js';
import { MongoImageStore } from './mongo-store.js';
import { SqliteImageStore } from './sqlite-store.js';

export async function openImageStore(config: Pick<GatewayConfig, 'mongo' | 'metadataStore'>): Promise<ImageStore> {
  if (config.mongo) return MongoImageStore.connect(config.mongo.uri, config.mongo.db);
  return new SqliteImageStore(config.metadataStore);
}
