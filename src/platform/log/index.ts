/**
 * The process logger: pino JSON lines to stdout, or with LOG_FILE to a file
 * rotated by size and by day (pino-roll). Secrets never reach a line: the
 * redact paths below cover every place a credential travels.
 */
import pino, { type Logger } from 'pino';
import type { Config } from '../../config.js';

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'headers.authorization',
  'headers["x-api-key"]',
  'password',
  'current_password',
  'refresh_token',
  'access_token',
  'token',
  'key',
  '*.password',
  '*.current_password',
  '*.refresh_token',
  '*.access_token',
  '*.token',
  '*.apiKey',
  '*.api_key',
];

export function createLogger(config: Pick<Config, 'logLevel' | 'logFile' | 'logMaxSize' | 'logKeep'>): Logger {
  const options: pino.LoggerOptions = {
    level: config.logLevel,
    base: { service: 'kiln' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
  };
  if (!config.logFile) return pino(options);
  const transport = pino.transport({
    target: 'pino-roll',
    options: {
      file: config.logFile,
      size: config.logMaxSize,
      frequency: 'daily',
      mkdir: true,
      limit: { count: config.logKeep },
    },
  });
  return pino(options, transport);
}
