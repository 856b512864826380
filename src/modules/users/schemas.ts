/** Request and answer schemas of the account routes (validation, types and OpenAPI from one source). */
import { Type } from '@sinclair/typebox';
import { EMAIL_MAX, PASSWORD_MAX, PASSWORD_MIN, USERNAME_PATTERN } from './account-rules.js';

const Time = Type.String({ format: 'date-time', description: 'ISO 8601 UTC' });
const Email = Type.String({ format: 'email', maxLength: EMAIL_MAX, examples: ['ada@example.com'] });
const Username = Type.String({ pattern: USERNAME_PATTERN, description: '3 to 50 letters, digits, ".", "_" or "-"' });
const Password = Type.String({ minLength: PASSWORD_MIN, maxLength: PASSWORD_MAX });

export const User = Type.Object({
  id: Type.String(),
  email: Type.String(),
  username: Type.String(),
  is_active: Type.Boolean(),
  is_admin: Type.Boolean(),
  created_at: Time,
  updated_at: Time,
});

export const RegisterBody = Type.Object({ email: Email, username: Username, password: Password });

export const LoginBody = Type.Object({
  email: Type.String({ maxLength: EMAIL_MAX }),
  password: Type.String({ maxLength: PASSWORD_MAX }),
  remember_me: Type.Optional(Type.Boolean({ default: false, description: 'a 30-day session instead of a 60-minute one' })),
});

export const TokenPair = Type.Object({
  access_token: Type.String(),
  refresh_token: Type.String(),
  token_type: Type.Literal('bearer'),
  expires_in: Type.Integer({ description: 'seconds until the access token expires' }),
});

export const RefreshBody = Type.Object({ refresh_token: Type.String({ minLength: 1, maxLength: 512 }) });

export const UpdateMeBody = Type.Object({
  username: Type.Optional(Username),
  email: Type.Optional(Email),
  password: Type.Optional(Password),
  current_password: Type.Optional(Type.String({ maxLength: PASSWORD_MAX, description: 'required to change email or password' })),
});

export const ApiKeyBody = Type.Object({ name: Type.String({ minLength: 1, maxLength: 100, pattern: '\\S', description: 'shown in the list; at least one character that is not a space' }) });

export const ApiKey = Type.Object({
  id: Type.String(),
  name: Type.String(),
  prefix: Type.String(),
  created_at: Time,
  last_used_at: Type.Union([Time, Type.Null()]),
});

export const NewApiKey = Type.Object({
  id: Type.String(),
  name: Type.String(),
  key: Type.String({ description: 'shown this once; store it now' }),
  prefix: Type.String(),
  created_at: Time,
});

export const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });

export const UserListQuery = Type.Object({
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
  cursor: Type.Optional(Type.String({ maxLength: 512 })),
});

export const UserPage = Type.Object({
  users: Type.Array(User),
  next_cursor: Type.Union([Type.String(), Type.Null()], { description: 'pass as `cursor` for the next page; null on the last' }),
});

export const AdminPatchBody = Type.Object({
  is_active: Type.Optional(Type.Boolean()),
  is_admin: Type.Optional(Type.Boolean()),
});

export const NoContent = Type.Null({ description: 'no content' });

/** OpenAPI security of routes that need a signed-in caller (bearer JWT or X-API-Key). */
export { SIGNED_IN } from '../../platform/http/schemas.js';
