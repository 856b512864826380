/** The shape rules of an account, shared by the HTTP schemas, the CLI and the admin bootstrap. */
import { ValidationFailed, type FieldError } from '../../errors.js';

export const PASSWORD_MIN = 8;
/** argon2 hashes any length, but a megabyte password is a denial of service, not a password. */
export const PASSWORD_MAX = 1024;
export const USERNAME_PATTERN = '^[A-Za-z0-9_.-]{3,50}$';
export const EMAIL_MAX = 254;

const EMAIL_SHAPE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** Checks what the HTTP schema checks, for callers that do not come through HTTP. */
export function checkAccountFields(fields: { email?: string; username?: string; password?: string }): void {
  const errors: FieldError[] = [];
  if (fields.email !== undefined && (!EMAIL_SHAPE.test(fields.email) || fields.email.length > EMAIL_MAX)) {
    errors.push({ field: 'email', message: 'must be an email address' });
  }
  if (fields.username !== undefined && !new RegExp(USERNAME_PATTERN).test(fields.username)) {
    errors.push({ field: 'username', message: 'must be 3 to 50 letters, digits, ".", "_" or "-"' });
  }
  if (fields.password !== undefined && (fields.password.length < PASSWORD_MIN || fields.password.length > PASSWORD_MAX)) {
    errors.push({ field: 'password', message: `must be ${PASSWORD_MIN} to ${PASSWORD_MAX} characters` });
  }
  const first = errors[0];
  if (first) throw new ValidationFailed(`${first.field} ${first.message}.`, errors);
}
