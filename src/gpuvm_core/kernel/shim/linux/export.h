/* SPDX-License-Identifier: MIT */
/* gpuvm_core kernel oracle: module export and metadata markers expand to nothing. */
#ifndef ORACLE_SHIM_EXPORT_H
#define ORACLE_SHIM_EXPORT_H

#define EXPORT_SYMBOL(sym)
#define EXPORT_SYMBOL_GPL(sym)
#define MODULE_DESCRIPTION(text)
#define MODULE_LICENSE(text)
#define MODULE_AUTHOR(text)

#endif
