/** Picks the product database Kiln asks; today one, Open Food Facts' API at EAN_PROVIDER_URL. */
import type { Config } from '../../../config.js';
import { OpenFoodFactsProvider } from './openfoodfacts.js';
import type { GetJson, ProductProvider } from './types.js';

export function createProvider(config: Pick<Config, 'eanProviderUrl'>, getJson: GetJson): ProductProvider {
  return new OpenFoodFactsProvider(config.eanProviderUrl, getJson);
}

export type { GetJson, JsonAnswer, ProductInfo, ProductProvider } from './types.js';
